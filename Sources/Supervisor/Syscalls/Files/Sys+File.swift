import CShim
import Glibc
import SysKit
import Wire

/// Opening and creating files.
enum File {
    /// Implements open(2).
    static func open(_ c: borrowing Call) throws(Failure) -> Reply {
        try openCommon(c, dirfd: AT_FDCWD, pathArg: 0, flags: legacyFlags(c.int(1)), mode: c.raw(2), resolve: 0)
    }

    /// Implements openat(2).
    static func openat(_ c: borrowing Call) throws(Failure) -> Reply {
        try openCommon(c, dirfd: c.fd(0), pathArg: 1, flags: legacyFlags(c.int(2)), mode: c.raw(3), resolve: 0)
    }

    /// open(2) and openat(2) ignore flag bits they do not know (openat2,
    /// which the home executes, refuses them): the kernel's VALID_OPEN_FLAGS.
    private static func legacyFlags(_ flags: Int32) -> Int32 { flags & 0o37777703 }

    /// Implements openat2(2).
    static func openat2(_ c: borrowing Call) throws(Failure) -> Reply {
        // The kernel's checks on struct open_how, in its order (copy_struct_from_user, build_open_how).
        let size = c.size(3), known = MemoryLayout<cshim_open_how>.size
        guard size >= known else { throw .errno(.invalidArgument) }
        guard size <= 4096 else { throw .errno(.argListTooLong) }
        let raw = c.worker.scratch
        try local { () throws(Errno) in try c.memory.readExactly(c.address(2), into: raw.baseAddress!, count: size) }
        // A larger struct from a newer libc is fine only if the fields we do not know are zero.
        if size > known, raw[known..<size].contains(where: { $0 != 0 }) { throw .errno(.argListTooLong) }
        let how = raw.loadUnaligned(as: cshim_open_how.self)
        guard how.flags <= UInt64(UInt32.max) else { throw .errno(.invalidArgument) }
        let flags = Int32(bitPattern: UInt32(how.flags))
        let creates = flags & O_CREAT != 0 || flags & CSHIM_O_TMPFILE == CSHIM_O_TMPFILE
        guard how.mode & ~0o7777 == 0, creates || how.mode == 0 else { throw .errno(.invalidArgument) }
        return try openCommon(c, dirfd: c.fd(0), pathArg: 1, flags: flags, mode: how.mode, resolve: how.resolve)
    }

    /// Implements creat(2).
    static func creat(_ c: borrowing Call) throws(Failure) -> Reply {
        try openCommon(c, dirfd: AT_FDCWD, pathArg: 0, flags: O_CREAT | O_WRONLY | O_TRUNC, mode: c.raw(1), resolve: 0)
    }

    /// Implements truncate(2).
    static func truncate(_ c: borrowing Call) throws(Failure) -> Reply {
        let (route, len) = try c.routePath(arg: 0, dirfd: AT_FDCWD, into: c.worker.slot.payload(for: .truncate))
        guard let to = route.destination else { return .continueSyscall }
        if c.worker.routedCopy { throw .errno(.readOnlyFileSystem) }
        _ = try c.send(to, .truncate, Scalars(to.dir, c.offset(1)), payloadLength: len)
        return .value(0)
    }

    /// The open family: forwarded paths are opened at home and come back as
    /// a placeholder descriptor.
    private static func openCommon(_ c: borrowing Call, dirfd: Int32, pathArg: Int, flags: Int32, mode: UInt64,
                                   resolve: UInt64) throws(Failure) -> Reply {
        let (route, len) = try c.routePath(arg: pathArg, dirfd: dirfd, into: c.worker.slot.payload(for: .openat))
        guard let to = route.destination else { return .continueSyscall }
        if c.worker.routedCopy, !to.isLocal,
           let reply = try ByValue.open(c, to: to, pathLength: len, flags: flags, resolve: resolve) { return reply }
        let creates = flags & O_CREAT != 0 || flags & CSHIM_O_TMPFILE == CSHIM_O_TMPFILE
        if !creates && resolve == 0 && c.knownAbsent(to, payload: c.worker.slot.payload(for: .openat), pathLength: len) {
            throw .errno(.noSuchFileOrDirectory)
        }
        let effectiveMode = try creates ? UInt32(truncatingIfNeeded: mode) & 0o7777 & ~c.umask() : 0
        let r = try c.send(to, .openat, Scalars(to.dir, Int64(flags), Int64(effectiveMode), Int64(bitPattern: resolve)),
                           payloadLength: len)
        if to.isLocal {
            // The local deputy's descriptor is ours: the tracee gets it as is.
            defer { c.sup.localLink.release(handle: r.result) }
            var source = CInt(r.result)
            if flags & CSHIM_O_PATH != 0 {
                // SECCOMP_IOCTL_NOTIF_ADDFD cannot pass an O_PATH descriptor
                // (fget refuses them): give a read-only open of the same object.
                source = try local { () throws(Errno) in
                    try ProcPath.reopen(source, flags: O_RDONLY | O_NONBLOCK | O_CLOEXEC | (flags & O_DIRECTORY))
                }
            }
            defer { if source != CInt(r.result) { Glibc.close(source) } }
            let fd = try local { () throws(Errno) in
                try c.sup.listener.installAndRespond(id: c.id, source: source, closeOnExec: flags & O_CLOEXEC != 0)
            }
            return .answered(Int64(fd))
        }
        if r.payload.count == 1 && r.payload[0] == Wire.openedDevice {
            return try Devices.open(c, handle: r.result, flags: flags)
        }
        // The name it was opened by, for names relative to it later: the
        // routed absolute form, or the object's own when reopened through
        // /proc/self/fd.
        let path = len == 1 ? (to.keep as? Placeholder).flatMap { ($0.owner ?? $0).path }
            : Array(UnsafeRawBufferPointer(rebasing: c.worker.normalized[0..<c.worker.normalizedLength]))
        return try c.installPlaceholder(handle: r.result, flags: flags, path: path)
    }
}
