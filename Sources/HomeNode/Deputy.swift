import CShim
import Glibc
import Logging
import SysKit
import Wire

/// One session's executor at home: it owns the session's open handles
/// (descriptors, hence offsets) and per-process working directories, and
/// executes each request inside the export root. Requests are executed in
/// arrival order on one thread; responses carry the request id.
public final class Deputy {
    private(set) var input: CInt = -1
    private(set) var output: CInt = -1
    let root: ExportRoot
    var log: Logger
    /// Descriptors that are handles of this session (and may be named by the client).
    var handles = Set<CInt>()
    let request: UnsafeMutableRawBufferPointer
    let response: UnsafeMutableRawBufferPointer
    /// How long to poll for the next request before sleeping (µs).
    public var pollMicroseconds = 50

    public init(rootPath: String, log: Logger) throws(Errno) {
        self.log = log
        root = try ExportRoot(path: rootPath)
        request = .allocate(byteCount: Wire.maxFrameLength, alignment: 16)
        response = .allocate(byteCount: Wire.maxFrameLength, alignment: 16)
        // The client applies each tracee process's own umask to modes. This
        // thread gets its own umask (and working directory) first, so a
        // deputy running inside wrap-and-run leaves the process's alone.
        _ = cshim_unshare_fs()
        umask(0)
    }

    /// The session's stream (one descriptor for both, or stdin/stdout).
    func attach(input: CInt, output: CInt) {
        self.input = input
        self.output = output
        FD.setBulkBuffers(input)
    }

    deinit {
        for h in handles { Glibc.close(h) }
        request.deallocate()
        response.deallocate()
    }

    /// How a session ended.
    public enum End: Equatable, CustomStringConvertible {
        case closedByPeer
        case refused(String)
        case protocolError(String)
        case ioError(Errno)
        public var description: String {
            switch self {
            case .closedByPeer: return "closed by peer"
            case .refused(let why): return "refused: \(why)"
            case .protocolError(let why): return "protocol error: \(why)"
            case .ioError(let e): return "I/O error: \(e)"
            }
        }
    }

    /// Runs the handshake (authenticating with `key` unless nil), then
    /// serves requests until the peer closes.
    public func run(key: [UInt8]?) -> End {
        var handshake = ServerHandshake(key: key, nonce: randomBytes(Wire.nonceSize))
        while true {
            let frame: [UInt8]
            do {
                guard let n = try readFrame() else { return .closedByPeer }
                frame = Array(UnsafeRawBufferPointer(rebasing: request[0..<n]))
            } catch let e as WireError {
                return .protocolError(e.description)
            } catch let e as Errno {
                return .ioError(e)
            } catch { return .protocolError("\(error)") }
            let step = handshake.receive(frame)
            for out in step.send {
                do { try FD.writeFully(output, out) }
                catch { return .ioError(error) }
            }
            switch step.outcome {
            case .proceed: continue
            case .complete: return serve()
            case .failed(let e):
                if e == .authenticationFailed { return .refused("wrong key (authentication failed)") }
                return .refused(e.description)
            }
        }
    }

    /// Reads one frame into `request`; nil on a clean EOF between frames.
    private func readFrame() throws -> Int? {
        if pollMicroseconds > 0 { FD.spinUntilReadable(input, microseconds: pollMicroseconds) }
        guard try FD.readFully(input, request.baseAddress!, Wire.headerSize) else { return nil }
        // Validates the length against the maximum before reading the body.
        let header = try FrameHeader.decode(UnsafeRawBufferPointer(rebasing: request[0..<Wire.headerSize]))
        let length = Int(header.length)
        if length > Wire.headerSize {
            guard try FD.readFully(input, request.baseAddress! + Wire.headerSize, length - Wire.headerSize) else {
                throw Errno.ioError
            }
        }
        return length
    }

    private func serve() -> End {
        while true {
            let n: Int
            do {
                guard let got = try readFrame() else { return .closedByPeer }
                n = got
            } catch let e as WireError {
                return .protocolError(e.description)
            } catch let e as Errno {
                return e == .connectionReset ? .closedByPeer : .ioError(e)
            } catch { return .protocolError("\(error)") }
            let view: RequestView
            do { view = try RequestView(frame: UnsafeRawBufferPointer(rebasing: request[0..<n])) } catch {
                return .protocolError(error.description)
            }
            if view.op.isHandshake { return .protocolError("handshake op \(view.op) after the handshake") }
            let payloadOffset = ResponseEncoder.payloadOffset
            let out = UnsafeMutableRawBufferPointer(rebasing: response[payloadOffset...])
            var result: Int64
            var payloadLength = 0
            do {
                (result, payloadLength) = try execute(view, out)
            } catch {
                result = -Int64(error.rawValue)
                payloadLength = 0
            }
            do {
                let len = try ResponseEncoder.encodeHeader(op: view.op, id: view.id, result: result,
                                                           payloadLength: payloadLength, into: response)
                try FD.writeFully(output, response.baseAddress!, len)
            } catch let e as Errno {
                // The client may exit without reading replies to its last releases.
                return e == .connectionReset || e == .brokenPipe ? .closedByPeer : .ioError(e)
            } catch {
                return .protocolError("\(error)")
            }
        }
    }
}
