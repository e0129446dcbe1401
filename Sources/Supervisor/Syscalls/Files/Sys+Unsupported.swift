import CShim
import Glibc
import SysKit

/// Syscalls that name files but are not forwarded. They are in the table
/// so that they never act on the target's file of a forwarded name: local
/// paths and descriptors run as usual, forwarded ones fail with a stated
/// errno (EOPNOTSUPP: "not supported here"), which programs already handle.
enum Unsupported {
    static let refusal = Failure.errno(.notSupportedOnSocket)   // EOPNOTSUPP

    /// A path argument (with an optional dirfd argument).
    static func path(_ pathArg: Int, dirfd dirfdArg: Int? = nil) -> Handler {
        return { (c: borrowing Call) throws(Failure) -> Reply in
            try refuseIfForwarded(c, pathArg: pathArg, dirfdArg: dirfdArg)
            return .continueSyscall
        }
    }

    /// Every call fails with `errno`.
    static func always(_ errno: Errno) -> Handler {
        return { (_: borrowing Call) throws(Failure) -> Reply in throw .errno(errno) }
    }

    private static func refuseIfForwarded(_ c: borrowing Call, pathArg: Int, dirfdArg: Int?) throws(Failure) {
        let dirfd = dirfdArg.map { c.fd($0) } ?? AT_FDCWD
        let (route, _) = try c.routePath(arg: pathArg, dirfd: dirfd, into: c.worker.slot.payload(for: .openat))
        // Local names the kernel could not resolve (emulated) cannot be
        // handed to it either: refused like forwarded ones.
        if case .local = route { return }
        throw refusal
    }
}
