import CShim
import Glibc
import SysKit

/// Syscalls that name files but are not forwarded yet. They are in the
/// table so that they never act on the target's file of a forwarded name:
/// local paths and descriptors run as usual, forwarded ones fail with a
/// stated errno (EOPNOTSUPP: "the home filesystem does not support this
/// here"), which programs such as `ls` and `cp` already handle.
enum Unsupported {
    static let refusal = Failure.errno(.notSupportedOnSocket)   // EOPNOTSUPP

    /// A path argument (with an optional dirfd argument).
    static func path(_ pathArg: Int, dirfd dirfdArg: Int? = nil) -> Handler {
        return { (c: borrowing Call) throws(Failure) -> Reply in
            try refuseIfForwarded(c, pathArg: pathArg, dirfdArg: dirfdArg)
            return .continueSyscall
        }
    }

    /// Two path arguments, each with an optional dirfd (link, linkat).
    static func twoPaths(_ a: Int, dirfd da: Int?, _ b: Int, dirfd db: Int?) -> Handler {
        return { (c: borrowing Call) throws(Failure) -> Reply in
            try refuseIfForwarded(c, pathArg: a, dirfdArg: da)
            try refuseIfForwarded(c, pathArg: b, dirfdArg: db)
            return .continueSyscall
        }
    }

    /// A descriptor argument.
    static func descriptor(_ fdArg: Int, errno: Errno = .notSupportedOnSocket) -> Handler {
        return { (c: borrowing Call) throws(Failure) -> Reply in
            if try c.placeholder(fd: c.fd(fdArg)) != nil { throw .errno(errno) }
            return .continueSyscall
        }
    }

    /// utimensat(2)/futimesat(2): a NULL path means the dirfd itself.
    static func pathOrDescriptor(_ pathArg: Int, dirfd dirfdArg: Int) -> Handler {
        return { (c: borrowing Call) throws(Failure) -> Reply in
            if c.raw(pathArg) == 0 {
                if try c.placeholder(fd: c.fd(dirfdArg)) != nil { throw refusal }
                return .continueSyscall
            }
            try refuseIfForwarded(c, pathArg: pathArg, dirfdArg: dirfdArg)
            return .continueSyscall
        }
    }

    private static func refuseIfForwarded(_ c: borrowing Call, pathArg: Int, dirfdArg: Int?) throws(Failure) {
        let dirfd = dirfdArg.map { c.fd($0) } ?? AT_FDCWD
        let (route, _) = try c.routePath(arg: pathArg, dirfd: dirfd, into: c.worker.slot.payload(for: .openat))
        if case .forward = route { throw refusal }
    }
}
