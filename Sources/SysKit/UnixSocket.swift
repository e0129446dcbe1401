import CShim
import Glibc

/// Unix stream sockets named by a path, close-on-exec (the handover of a
/// terminal at home: `homestub --hand-terminal` and its session).
public enum UnixSocket {
    /// A socket bound to `path` and listening for one connection.
    public static func listen(path: String) throws(Errno) -> CInt {
        let fd = try sys { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do throws(Errno) {
            try withAddress(path) { (a, n) throws(Errno) in _ = try sys { Glibc.bind(fd, a, n) } }
            try sys { Glibc.listen(fd, 1) }
            return fd
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// A socket connected to the listener at `path`.
    public static func connect(path: String) throws(Errno) -> CInt {
        let fd = try sys { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do throws(Errno) {
            try withAddress(path) { (a, n) throws(Errno) in _ = try sys { Glibc.connect(fd, a, n) } }
            return fd
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// The user id of a connected socket's peer (SO_PEERCRED), as it was when it connected.
    public static func peerUID(_ fd: CInt) -> uid_t? {
        var uid: UInt32 = 0
        return cshim_peer_uid(fd, &uid) == 0 ? uid_t(uid) : nil
    }

    /// Calls `body` with the `sockaddr_un` of `path`; ENAMETOOLONG if it does not fit.
    private static func withAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) throws(Errno) -> Void) throws(Errno) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw Errno.fileNameTooLong }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
        try withUnsafePointer(to: &address) { (p) throws(Errno) in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { (a) throws(Errno) in try body(a, length) }
        }
    }
}
