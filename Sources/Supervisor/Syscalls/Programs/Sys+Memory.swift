import CShim
import Glibc
import SysKit
import Wire

/// mmap of a forwarded file. A private map (the dynamic loader's, Python's
/// for an extension module) gets the file's contents: on the first mmap of
/// a forwarded descriptor opened read-only, the supervisor fetches the file
/// into a local sealed memory file (an ELF file, a library: into the copy
/// cache, where the next session finds it), puts that in the tracee at the
/// same descriptor number (same offset, same close-on-exec flag) and lets
/// the mmap run. The descriptor is a local snapshot from then on, which is what
/// a read-only mapping of it means. A writable descriptor's maps, and any
/// shared writable map, fail with ENODEV: write-back to home is not done.
enum Memory {
    static let MAP_SHARED: Int32 = 0x01, MAP_SHARED_VALIDATE: Int32 = 0x03, PROT_WRITE: Int32 = 0x2

    /// Implements mmap(2) for descriptors the filter watches.
    static func mmap(_ c: borrowing Call) throws(Failure) -> Reply {
        let fd = c.fd(4)
        guard let p = try c.placeholder(fd: fd) else { return .continueSyscall }
        let shared = c.int(3) & MAP_SHARED_VALIDATE != 0
        guard p.accessMode == O_RDONLY, !(shared && c.int(2) & PROT_WRITE != 0) else {
            throw .errno(.operationNotSupportedByDevice)
        }
        let copy = try snapshot(c, p)
        defer { Glibc.close(copy) }
        let closeOnExec = try isCloseOnExec(c, fd)
        _ = try local { () throws(Errno) in try c.sup.listener.install(id: c.id, source: copy, closeOnExec: closeOnExec, at: fd) }
        return .continueSyscall
    }

    /// A read-only memory file holding the forwarded file's current contents,
    /// positioned at the file's offset.
    private static func snapshot(_ c: borrowing Call, _ p: Placeholder) throws(Failure) -> CInt {
        if let path = (p.owner ?? p).path, try isELF(c, p.handle) {
            let offset = try c.home(.lseek, Scalars(p.handle, 0, Int64(SEEK_CUR))).result
            let copy = try ByValue.object(c, handle: p.handle, path: path)
            _ = Glibc.lseek(copy, off_t(offset), SEEK_SET)
            return copy
        }
        let stat = try c.home(.fstat, Scalars(p.handle))
        guard stat.payload.count == 256 else { throw .transport(.lost) }
        let size = Int64(UInt64(littleEndian: stat.payload.loadUnaligned(fromByteOffset: 40, as: UInt64.self)))
        let offset = try c.home(.lseek, Scalars(p.handle, 0, Int64(SEEK_CUR))).result
        let memfd = try local { () throws(Errno) in try sys { cshim_memfd_create("tether-map", 0) } }
        do {
            var done: Int64 = 0
            while done < size {
                let want = Int(min(size - done, Int64(Wire.maxPayload)))
                let r = try c.home(.pread, Scalars(p.handle, Int64(want), done))
                if r.result <= 0 { break }
                try local { () throws(Errno) in
                    _ = try sys { Glibc.pwrite(memfd, r.payload.baseAddress, r.payload.count, off_t(done)) }
                }
                done += Int64(r.payload.count)
            }
            // The tracee gets a read-only open of it, at the file's offset.
            let link = "/proc/self/fd/\(memfd)"
            let ro = try local { () throws(Errno) in try sys { cshim_openat(AT_FDCWD, link, O_RDONLY | O_CLOEXEC, 0) } }
            _ = Glibc.lseek(ro, off_t(offset), SEEK_SET)
            Glibc.close(memfd)
            return ro
        } catch {
            Glibc.close(memfd)
            throw error
        }
    }

    /// Whether the file open at home as `handle` starts with the ELF magic.
    private static func isELF(_ c: borrowing Call, _ handle: Int64) throws(Failure) -> Bool {
        let r = try c.home(.pread, Scalars(handle, 4, 0))
        return r.payload.count == 4 && r.payload.elementsEqual([0x7f, 0x45, 0x4c, 0x46])
    }

    /// The tracee descriptor's FD_CLOEXEC, from /proc/TID/fdinfo.
    static func isCloseOnExec(_ c: borrowing Call, _ fd: Int32) throws(Failure) -> Bool {
        guard let info = try? FD.readSmallFile("/proc/\(c.tid)/fdinfo/\(fd)") else { return false }
        for line in String(decoding: info, as: UTF8.self).split(separator: "\n") where line.hasPrefix("flags:") {
            let digits = line.dropFirst(6).trimmingPrefix { $0 == " " || $0 == "\t" }
            return (Int(digits, radix: 8) ?? 0) & Int(O_CLOEXEC) != 0
        }
        return false
    }
}
