import CShim
import Glibc
import SysKit
import Wire

/// Where the home node is.
public enum HomeAddress: Sendable, CustomStringConvertible {
    /// A homestub listening on TCP, authenticated with a pre-shared key.
    case tcp(Endpoint, key: [UInt8])
    /// A private home on this machine over a socketpair: `serve` runs a
    /// deputy session on the given descriptor (on a thread of its own, with
    /// its own umask and working directory: no process start-up to wait for).
    case spawn(root: String, serve: @Sendable (CInt) -> Void)
    /// A command whose stdin/stdout is the stream, e.g.
    /// `ssh node homestub --stdio`; authenticated with `key` if given.
    case command(String, key: [UInt8]?)

    public var description: String {
        switch self {
        case .tcp(let ep, _): return ep.description
        case .spawn: return "spawn"
        case .command(let c, _): return "`\(c)`"
        }
    }
}

/// Why the home node could not be reached: each maps to its own exit status.
public enum HomeConnectError: Error, CustomStringConvertible {
    case unreachable(String)
    case refused(String)
    case protocolError(String)

    public var description: String {
        switch self {
        case .unreachable(let s), .refused(let s), .protocolError(let s): return s
        }
    }
}

enum HomeConnection {
    /// How long a home that stopped answering goes unnoticed, at most
    /// (plus the last keepalive interval).
    static let deadHomeMilliseconds: UInt32 = 3500

    /// A connected stream, authenticated, and the keys that seal its frames
    /// (nil when the stream is trusted as it is: a private socketpair, or a
    /// home command without a key, such as ssh).
    struct Stream {
        var fd: CInt
        var keys: SessionKeys?
        /// The home announced `Wire.capabilityWatches` (the attribute cache may be used).
        var watches = false
    }

    /// Connects and completes the handshake; returns the stream.
    static func open(_ address: HomeAddress) throws(HomeConnectError) -> Stream {
        switch address {
        case .tcp(let ep, let key):
            let fd: CInt
            do { fd = try TCP.connect(ep) } catch {
                throw .unreachable("home node \(ep) is unreachable: \(error)")
            }
            // A silent partition fails pending calls with EIO within 5 s.
            TCP.detectDeadPeer(fd, withinMilliseconds: HomeConnection.deadHomeMilliseconds)
            do { return try handshake(fd, key: key, peer: ep.description) } catch {
                Glibc.close(fd)
                throw error
            }
        case .spawn(_, let serve):
            let (mine, theirs): (CInt, CInt)
            do { (mine, theirs) = try FD.socketPair() } catch {
                throw .unreachable("cannot create the home socketpair: \(error)")
            }
            FD.setBulkBuffers(mine)
            FD.setBulkBuffers(theirs)
            // When the home ends (the client closed, or a protocol error), its
            // end closes, so the client sees the end of the stream.
            ThreadRunner(name: "home") {
                serve(theirs)
                Glibc.close(theirs)
            }.start()
            do { return try handshake(mine, key: nil, peer: "the private home node") } catch {
                Glibc.close(mine)
                throw error
            }
        case .command(let command, let key):
            // The shell moves the stream (fd 3) onto stdin and stdout, then runs the command.
            return try spawnHome(path: "/bin/sh", argv: ["sh", "-c", "exec <&3 >&3 3>&-\n" + command],
                                 key: key, peer: "home command `\(command)`")
        }
    }

    /// Starts a home node process on one end of a socketpair and shakes hands.
    private static func spawnHome(path: String, argv: [String], key: [UInt8]?, peer: String) throws(HomeConnectError) -> Stream {
        let (mine, theirs): (CInt, CInt)
        do { (mine, theirs) = try FD.socketPair() } catch {
            throw .unreachable("cannot create the home socketpair: \(error)")
        }
        FD.setBulkBuffers(mine)
        FD.setBulkBuffers(theirs)
        do {
            _ = try Spawn.plain(path: path, argv: argv, env: Spawn.environment, keep: [theirs])
        } catch {
            Glibc.close(theirs)
            Glibc.close(mine)
            throw .unreachable("cannot start \(peer): \(String(cString: strerror(error.rawValue)))")
        }
        // Only the child holds its end now: if it dies, the handshake sees EOF.
        Glibc.close(theirs)
        do { return try handshake(mine, key: key, peer: peer) } catch {
            Glibc.close(mine)
            throw error
        }
    }

    /// Shakes hands; returns the stream, with the session's keys when it is authenticated.
    private static func handshake(_ fd: CInt, key: [UInt8]?, peer: String) throws(HomeConnectError) -> Stream {
        var client = ClientHandshake(key: key, nonce: randomBytes(Wire.nonceSize))
        do {
            try send(fd, client.helloFrame())
            while !client.isComplete {
                guard let frame = try readFrame(fd) else {
                    throw HomeConnectError.refused("\(peer) closed the connection during the handshake")
                }
                if let next = try client.receive(frame) { try send(fd, next) }
            }
            return Stream(fd: fd, keys: client.sessionKeys,
                          watches: client.serverCapabilities & Wire.capabilityWatches != 0)
        } catch let e as HomeConnectError {
            throw e
        } catch let e as WireError {
            switch e {
            case .refused(reason: 1), .authenticationFailed:
                throw .refused("\(peer) refused the key (authentication failed): check --key-file")
            case .refused(reason: 2), .unsupportedVersion:
                throw .protocolError("\(peer) speaks another protocol version")
            default:
                throw .protocolError("handshake with \(peer) failed: \(e)")
            }
        } catch let e as Errno {
            throw .unreachable("lost \(peer) during the handshake: \(String(cString: strerror(e.rawValue)))")
        } catch {
            throw .protocolError("handshake with \(peer) failed: \(error)")
        }
    }

    private static func send(_ fd: CInt, _ frame: [UInt8]) throws(Errno) {
        try FD.writeFully(fd, frame)
    }

    /// Reads one handshake frame (bounded by the header check).
    private static func readFrame(_ fd: CInt) throws -> [UInt8]? {
        var header = [UInt8](repeating: 0, count: Wire.headerSize)
        let ok = try header.withUnsafeMutableBytes { (b) throws(Errno) in try FD.readFully(fd, b.baseAddress!, b.count) }
        if !ok { return nil }
        let h = try header.withUnsafeBytes { (b) throws(WireError) in try FrameHeader.decode(b) }
        var frame = header + [UInt8](repeating: 0, count: Int(h.length) - Wire.headerSize)
        if frame.count > Wire.headerSize {
            let got = try frame.withUnsafeMutableBytes { (b) throws(Errno) in
                try FD.readFully(fd, b.baseAddress! + Wire.headerSize, b.count - Wire.headerSize)
            }
            if !got { return nil }
        }
        return frame
    }
}
