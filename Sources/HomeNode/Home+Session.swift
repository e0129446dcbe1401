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

extension HomeSessionOps {
    /// Implements the credentials a channel's later requests act with:
    /// scalars [channel, fsuid, fsgid, groupCount]; payload: the groups.
    static func credentials(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let count = c.r.scalar(3), payload = c.r.payload
        guard count >= 0, count <= Int64(Wire.maxGroups), payload.count == 4 * Int(count),
              let channel = UInt16(exactly: c.r.scalar(0)),
              let uid = UInt32(exactly: c.r.scalar(1)), let gid = UInt32(exactly: c.r.scalar(2)) else {
            throw Errno.invalidArgument
        }
        let groups = (0..<Int(count)).map { UInt32(littleEndian: payload.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
        c.session.credentials.set(channel: channel, HomeCredentials(uid: uid, gid: gid, groups: groups))
        return (0, 0)
    }
}
