import Glibc
import SysKit
import Wire

/// Requests about the session rather than a file.
enum HomeSessionOps {
    /// Implements the interruption of a blocked call by a signal: scalars
    /// [requestId]. The call named ends with EINTR, or with its partial
    /// result; one that already finished keeps its result.
    static func cancel(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        c.session.cancel(UInt64(bitPattern: c.r.scalar(0)))
        return (0, 0)
    }

    /// Implements a transport round trip (no syscall): scalars [replySize].
    static func echo(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let n = try c.count(c.r.scalar(0))
        memset(c.out.baseAddress!, 0, n)
        return (Int64(n), n)
    }
}
