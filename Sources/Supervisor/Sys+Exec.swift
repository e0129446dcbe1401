import CShim
import Glibc
import SysKit

/// execve and execveat: watched so that the binding policy decides on the
/// program's path as on any other (a `deny` rule refuses it with its errno,
/// also through a symlink). The kernel then runs the call: the program is
/// the target's file at that path.
enum Exec {
    /// Implements execve(2).
    static func execve(_ c: borrowing Call) throws(Failure) -> Reply {
        _ = try c.routePath(arg: 0, dirfd: AT_FDCWD, into: c.worker.slot.payload(for: .openat))
        return .continueSyscall
    }

    /// Implements execveat(2).
    static func execveat(_ c: borrowing Call) throws(Failure) -> Reply {
        let emptyPath = c.int(4) & CSHIM_AT_EMPTY_PATH != 0
        _ = try c.routePath(arg: 1, dirfd: c.fd(0), into: c.worker.slot.payload(for: .openat), allowEmpty: emptyPath)
        return .continueSyscall
    }
}
