import CShim
import Glibc
import SysKit
import Wire

/// Metadata: stat family, access checks, symlink reads.
enum Stat {
    /// Implements fstat(2).
    static func fstat(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.devicePlaceholder(fd: c.fd(0), unless: c.placeholder(fd: c.fd(0))) else { return .continueSyscall }
        let r = try c.home(.fstat, Scalars(p.handle))
        try writeStat(c, r.payload, to: c.address(1))
        return .value(0)
    }

    /// Implements stat(2).
    static func stat(_ c: borrowing Call) throws(Failure) -> Reply {
        try statCommon(c, dirfd: AT_FDCWD, pathArg: 0, bufArg: 1, flags: 0)
    }

    /// Implements lstat(2).
    static func lstat(_ c: borrowing Call) throws(Failure) -> Reply {
        try statCommon(c, dirfd: AT_FDCWD, pathArg: 0, bufArg: 1, flags: AT_SYMLINK_NOFOLLOW)
    }

    /// Implements newfstatat(2) (fstatat).
    static func newfstatat(_ c: borrowing Call) throws(Failure) -> Reply {
        try statCommon(c, dirfd: c.fd(0), pathArg: 1, bufArg: 2, flags: c.int(3))
    }

    /// Implements statx(2): the home kernel's struct statx, unchanged.
    static func statx(_ c: borrowing Call) throws(Failure) -> Reply {
        let flags = c.int(2)
        let (route, len) = try c.routePath(arg: 1, dirfd: c.fd(0), into: c.worker.slot.payload(for: .statx),
                                           allowEmpty: flags & CSHIM_AT_EMPTY_PATH != 0)
        guard let to = route.destination else { return .continueSyscall }
        let mask = UInt32(bitPattern: c.int(3))
        let statx: UnsafeRawBufferPointer
        if let cached = try c.cachedStatx(to, flags: flags, mask: mask, pathLength: len) {
            statx = cached
        } else {
            statx = try c.send(to, .statx, Scalars(to.dir, Int64(flags), Int64(c.int(3))), payloadLength: len).payload
        }
        guard statx.count == 256 else { throw .transport(.lost) }
        try local { () throws(Errno) in try c.memory.write(c.address(4), from: statx.baseAddress!, count: 256) }
        return .value(0)
    }

    /// Implements access(2).
    static func access(_ c: borrowing Call) throws(Failure) -> Reply {
        try accessCommon(c, dirfd: AT_FDCWD, pathArg: 0, mode: c.int(1), flags: 0)
    }

    /// Implements faccessat(2).
    static func faccessat(_ c: borrowing Call) throws(Failure) -> Reply {
        try accessCommon(c, dirfd: c.fd(0), pathArg: 1, mode: c.int(2), flags: 0)
    }

    /// Implements faccessat2(2).
    static func faccessat2(_ c: borrowing Call) throws(Failure) -> Reply {
        try accessCommon(c, dirfd: c.fd(0), pathArg: 1, mode: c.int(2), flags: c.int(3))
    }

    /// Implements readlink(2).
    static func readlink(_ c: borrowing Call) throws(Failure) -> Reply {
        try readlinkCommon(c, dirfd: AT_FDCWD, pathArg: 0, bufArg: 1, sizeArg: 2)
    }

    /// Implements readlinkat(2).
    static func readlinkat(_ c: borrowing Call) throws(Failure) -> Reply {
        try readlinkCommon(c, dirfd: c.fd(0), pathArg: 1, bufArg: 2, sizeArg: 3)
    }

    // MARK: shared

    private static func statCommon(_ c: borrowing Call, dirfd: Int32, pathArg: Int, bufArg: Int, flags: Int32) throws(Failure) -> Reply {
        let (route, len) = try c.routePath(arg: pathArg, dirfd: dirfd, into: c.worker.slot.payload(for: .statx),
                                           allowEmpty: flags & CSHIM_AT_EMPTY_PATH != 0)
        guard let to = route.destination else { return .continueSyscall }
        if let cached = try c.cachedStatx(to, flags: flags, mask: CSHIM_STATX_BASIC_STATS, pathLength: len) {
            try writeStat(c, cached, to: c.address(bufArg))
            return .value(0)
        }
        let r = try c.send(to, .statx, Scalars(to.dir, Int64(flags), Int64(CSHIM_STATX_BASIC_STATS)), payloadLength: len)
        try writeStat(c, r.payload, to: c.address(bufArg))
        return .value(0)
    }

    private static func accessCommon(_ c: borrowing Call, dirfd: Int32, pathArg: Int, mode: Int32, flags: Int32) throws(Failure) -> Reply {
        let (route, len) = try c.routePath(arg: pathArg, dirfd: dirfd, into: c.worker.slot.payload(for: .faccessat),
                                           allowEmpty: flags & CSHIM_AT_EMPTY_PATH != 0)
        guard let to = route.destination else { return .continueSyscall }
        if c.knownAbsent(to, payload: c.worker.slot.payload(for: .faccessat), pathLength: len) {
            throw .errno(.noSuchFileOrDirectory)
        }
        _ = try c.send(to, .faccessat, Scalars(to.dir, Int64(mode), Int64(flags)), payloadLength: len)
        return .value(0)
    }

    private static func readlinkCommon(_ c: borrowing Call, dirfd: Int32, pathArg: Int, bufArg: Int, sizeArg: Int) throws(Failure) -> Reply {
        let size = Int(Int32(truncatingIfNeeded: c.raw(sizeArg)))
        guard size > 0 else { throw .errno(.invalidArgument) }
        let (route, len) = try c.routePath(arg: pathArg, dirfd: dirfd, into: c.worker.slot.payload(for: .readlinkat))
        guard let to = route.destination else { return .continueSyscall }
        let r = try c.send(to, .readlinkat, Scalars(to.dir, Int64(min(size, Wire.maxPayload))), payloadLength: len)
        let n = min(r.payload.count, size)
        try local { () throws(Errno) in try c.memory.write(c.address(bufArg), from: r.payload.baseAddress!, count: n) }
        return .value(Int64(n))
    }

    /// Converts the home's struct statx to the x86_64 struct stat and writes it.
    private static func writeStat(_ c: borrowing Call, _ statx: UnsafeRawBufferPointer, to address: UInt64) throws(Failure) {
        guard statx.count == 256 else { throw .transport(.lost) }
        let out = c.worker.scratch
        StatLayout.statxToStat(statx, into: out)
        try local { () throws(Errno) in try c.memory.write(address, from: out.baseAddress!, count: StatLayout.statSize) }
    }
}

/// The two kernel layouts involved: struct statx (arch-independent, what
/// travels on the wire) and x86_64's struct stat (what fstat returns).
enum StatLayout {
    static let statSize = 144

    static func statxToStat(_ x: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) {
        func u16(_ o: Int) -> UInt64 { UInt64(UInt16(littleEndian: x.loadUnaligned(fromByteOffset: o, as: UInt16.self))) }
        func u32(_ o: Int) -> UInt64 { UInt64(UInt32(littleEndian: x.loadUnaligned(fromByteOffset: o, as: UInt32.self))) }
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: x.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        func put(_ v: UInt64, _ o: Int, _ size: Int) {
            if size == 8 { out.storeBytes(of: v.littleEndian, toByteOffset: o, as: UInt64.self) }
            else { out.storeBytes(of: UInt32(truncatingIfNeeded: v).littleEndian, toByteOffset: o, as: UInt32.self) }
        }
        // glibc's makedev(): the bit layout of a 64-bit dev_t.
        func dev(_ major: UInt64, _ minor: UInt64) -> UInt64 {
            ((major & 0xffff_f000) << 32) | ((major & 0xfff) << 8) | ((minor & 0xffff_ff00) << 12) | (minor & 0xff)
        }
        memset(out.baseAddress!, 0, statSize)
        put(dev(u32(136), u32(140)), 0, 8)      // st_dev   <- stx_dev_major/minor
        put(u64(32), 8, 8)                      // st_ino
        put(u32(16), 16, 8)                     // st_nlink
        put(u16(28), 24, 4)                     // st_mode
        put(u32(20), 28, 4)                     // st_uid
        put(u32(24), 32, 4)                     // st_gid
        put(dev(u32(128), u32(132)), 40, 8)     // st_rdev  <- stx_rdev_major/minor
        put(u64(40), 48, 8)                     // st_size
        put(u32(4), 56, 8)                      // st_blksize
        put(u64(48), 64, 8)                     // st_blocks
        for (from, to) in [(64, 72), (112, 88), (96, 104)] {   // atime, mtime, ctime
            put(u64(from), to, 8)
            put(u32(from + 8), to + 8, 8)
        }
    }
}
