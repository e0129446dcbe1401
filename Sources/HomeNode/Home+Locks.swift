import CShim
import Dispatch
import Glibc
import SysKit
import Wire

/// Status flags and locks, at home. A lock request that waits (F_OFD_SETLKW,
/// flock without LOCK_NB) runs on a thread of its own and waits in the home
/// kernel, so it is granted the moment the holder lets go; `cancel` ends the
/// wait with EINTR.
enum HomeLocks {
    static let F_OFD_GETLK: Int32 = 36, F_OFD_SETLK: Int32 = 37, F_OFD_SETLKW: Int32 = 38

    /// Implements fcntl(2) F_GETFL/F_SETFL: scalars [handle, cmd, arg].
    static func fcntl(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0)), cmd = c.int(1)
        guard cmd == F_GETFL || cmd == F_SETFL else { throw Errno.invalidArgument }
        let v = try sys { cshim_fcntl_int(fd, cmd, Int(truncatingIfNeeded: c.r.scalar(2))) }
        return (Int64(v), 0)
    }

    /// Implements fcntl(2) record locks: scalars [handle, cmd]; payload: struct flock.
    static func lock(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0)), cmd = c.int(1)
        guard cmd == F_GETLK || cmd == F_SETLK || cmd == F_OFD_GETLK || cmd == F_OFD_SETLK || cmd == F_OFD_SETLKW,
              c.r.payload.count == MemoryLayout<Glibc.flock>.size else { throw Errno.invalidArgument }
        var lock = Glibc.flock()
        withUnsafeMutableBytes(of: &lock) { $0.copyMemory(from: c.r.payload) }
        try c.interruptible { cshim_fcntl_ptr(fd, cmd, &lock) }
        withUnsafeBytes(of: &lock) { c.out.copyMemory(from: $0) }
        return (0, MemoryLayout<Glibc.flock>.size)
    }

    /// Implements flock(2): scalars [handle, operation].
    static func flock(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0)), op = c.int(1)
        try c.interruptible { cshim_flock(fd, op) }
        return (0, 0)
    }
}

/// POSIX record locks of one tracee process (see `LockOwners`).
extension HomeLocks {
    /// Implements fcntl(2) F_GETLK/F_SETLK/F_SETLKW for the owner process:
    /// scalars [handle, cmd, owner]; payload: struct flock. Runs on the
    /// owner's threads.
    static func posixLock(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let handle = try c.handle(c.r.scalar(0)), cmd = c.int(1)
        guard cmd == F_GETLK || cmd == F_SETLK || cmd == F_SETLKW, c.r.payload.count == MemoryLayout<Glibc.flock>.size,
              let tgid = Int32(exactly: c.r.scalar(2)), let owner = c.session.lockOwners.existing(tgid) else {
            throw Errno.invalidArgument
        }
        var lock = Glibc.flock()
        withUnsafeMutableBytes(of: &lock) { $0.copyMemory(from: c.r.payload) }
        // Our own copy: this thread's descriptor table is the owner's.
        let (fd, file) = try owner.copy(of: handle)
        try absolute(&lock, of: fd)
        try c.interruptible { cshim_fcntl_ptr(fd, cmd, &lock) }
        if cmd == F_GETLK {
            // Another owner of this session: the kernel says only "this deputy".
            if lock.l_type != Int16(F_UNLCK), lock.l_pid == getpid(),
               let holder = c.session.lockOwners.holder(of: lock, on: file, excluding: owner) {
                lock.l_pid = holder
            }
        } else {
            owner.record(lock, on: file)
        }
        withUnsafeBytes(of: &lock) { c.out.copyMemory(from: $0) }
        return (0, MemoryLayout<Glibc.flock>.size)
    }

    /// Implements close(2)'s release of the owner's locks on a file:
    /// scalars [owner, handle].
    static func lockOwnerClose(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let handle = try c.handle(c.r.scalar(1))
        guard let tgid = Int32(exactly: c.r.scalar(0)) else { throw Errno.invalidArgument }
        guard let owner = c.session.lockOwners.existing(tgid) else { return (0, 0) }
        let done = DispatchSemaphore(value: 0)
        owner.post(.release(try FileKey(handle), done))
        done.wait()
        return (0, 0)
    }

    /// Implements a process exit's release of its locks: scalars [owner].
    static func lockOwnerExit(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        guard let tgid = Int32(exactly: c.r.scalar(0)) else { throw Errno.invalidArgument }
        c.session.endLockOwner(tgid)
        return (0, 0)
    }

    /// Makes a lock's range absolute (SEEK_SET, length ≥ 0) against the
    /// handle's offset and size now, as the kernel would, so that what the
    /// owner records is what the kernel granted.
    private static func absolute(_ l: inout Glibc.flock, of fd: CInt) throws(Errno) {
        var base: Int64 = 0
        switch Int32(l.l_whence) {
        case SEEK_SET: base = 0
        case SEEK_CUR: base = Int64(try sys { Glibc.lseek(fd, 0, SEEK_CUR) })
        case SEEK_END:
            var st = stat()
            try sys { fstat(fd, &st) }
            base = Int64(st.st_size)
        default: throw Errno.invalidArgument
        }
        var (start, overflow) = base.addingReportingOverflow(Int64(l.l_start))
        var len = Int64(l.l_len)
        if len < 0 {
            (start, overflow) = (start.addingReportingOverflow(len).partialValue, overflow || len == Int64.min)
            len = -len
        }
        guard !overflow, start >= 0 else { throw Errno.invalidArgument }
        l.l_whence = Int16(SEEK_SET)
        l.l_start = off_t(start)
        l.l_len = off_t(len)
    }
}
