import CShim
import Glibc
import Logging
import SysKit
import Wire

/// One session's executor at home: it owns the session's open handles
/// (descriptors, hence offsets) and per-process working directories, and
/// executes each request inside the export root. It reads requests in
/// order; a request that cannot block runs at once on the reading thread,
/// one that may block (see `HomeOps`) on a thread of its own, so replies,
/// which carry the request id, may leave out of order.
public final class Deputy {
    private(set) var input: CInt = -1
    private(set) var output: CInt = -1
    let root: ExportRoot
    var log: Logger
    /// Handshake frames (the session's calls bring their own buffers).
    let request: UnsafeMutableRawBufferPointer
    /// Opens the client's sealed frames, which land in `sealed` first
    /// (nil and empty on an unsealed session).
    private var opener: FrameOpener?
    private var sealed = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    /// The most it polls for the next request before sleeping (µs); how
    /// long it does is learnt from the gaps between requests (`SpinBudget`).
    public var pollMicroseconds = 50 {
        didSet { spin = SpinBudget(maximum: pollMicroseconds) }
    }
    private var spin = SpinBudget(maximum: 50)
    /// The stream's bytes read ahead of the frame being parsed: a request
    /// and its body come in one read(2) (`ReadAhead`).
    private var ahead = ReadAhead(bytes: 64 << 10)
    /// What the session may hold (fitted to the descriptor limit when it starts).
    public var limits = SessionLimits()

    public init(rootPath: String, allowDevices: Bool = false, log: Logger) throws(Errno) {
        self.log = log
        root = try ExportRoot(path: rootPath, allowDevices: allowDevices)
        request = .allocate(byteCount: Wire.maxFrameLength, alignment: 16)
        // The client applies each tracee process's own umask to modes. This
        // process gets its own umask (and working directory) first, so a
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
        request.deallocate()
        sealed.deallocate()
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
        var handshake = ServerHandshake(key: key, nonce: randomBytes(Wire.nonceSize), capabilities: Wire.capabilityWatches)
        while true {
            let frame: [UInt8]
            do {
                guard let n = try readFrame(into: request) else { return .closedByPeer }
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
            case .complete: return serve(keys: handshake.sessionKeys)
            case .failed(let e):
                if e == .authenticationFailed { return .refused("wrong key (authentication failed)") }
                return .refused(e.description)
            }
        }
    }

    /// Reads one frame into `buffer`; nil on a clean EOF between frames.
    /// With `call` (whose request buffer `buffer` is), a large write to a
    /// stream handle on an unsealed stream, its payload marked
    /// `stablePayload`, leaves the start of that payload in the call's pipe
    /// instead (`SplicePipe.fill`): the pipe, then the handle, keep
    /// references to the pages, which only such a payload allows.
    private func readFrame(into buffer: UnsafeMutableRawBufferPointer, for call: HomeCall? = nil) throws -> Int? {
        // Waits only when nothing read ahead is left to parse.
        if pollMicroseconds > 0 && ahead.buffered == 0 { spin.wait(input) }
        if let opener { return try readSealedFrame(into: buffer, opener) }
        call?.dropInbound()
        guard try ahead.read(input, into: buffer.baseAddress!, count: Wire.headerSize, atFrameStart: true) else { return nil }
        // Validates the length against the maximum before reading the body.
        let header = try FrameHeader.decode(UnsafeRawBufferPointer(rebasing: buffer[0..<Wire.headerSize]))
        let length = Int(header.length)
        var got = Wire.headerSize
        if let call, header.op == .write || header.op == .streamWrite, header.flags.contains(.stablePayload),
           length - SplicePipe.writePayloadOffset >= SplicePipe.threshold {
            got = try readSplicedWrite(call, length: length)
        }
        if length > got {
            _ = try ahead.read(input, into: buffer.baseAddress! + got, count: length - got, atFrameStart: false)
        }
        return length
    }

    /// Reads a large write's handle; if it is a stream's, moves the payload
    /// into the call's pipe, as much as it holds. Returns the frame's bytes
    /// in hand (the rest is read into the request as usual).
    private func readSplicedWrite(_ call: HomeCall, length: Int) throws -> Int {
        let fixed = SplicePipe.writePayloadOffset
        let buffer = call.request
        _ = try ahead.read(input, into: buffer.baseAddress! + Wire.headerSize, count: fixed - Wire.headerSize, atFrameStart: false)
        let handle = Int64(littleEndian: UnsafeRawBufferPointer(buffer).loadUnaligned(fromByteOffset: Wire.headerSize, as: Int64.self))
        guard call.session.handles.kind(handle) == .stream, let pipe = call.inboundPipe() else { return fixed }
        return try fixed + pipe.fill(from: input, ahead: &ahead, count: length - fixed)
    }

    /// Reads one sealed frame whole and opens it into `buffer` (which
    /// checks its header); nil on a clean EOF between frames.
    private func readSealedFrame(into buffer: UnsafeMutableRawBufferPointer, _ opener: FrameOpener) throws -> Int? {
        let prefix = UnsafeMutableRawBufferPointer(rebasing: sealed[0..<4])
        guard try ahead.read(input, into: prefix.baseAddress!, count: 4, atFrameStart: true) else { return nil }
        let n = try FrameOpener.sealedLength(prefix: UnsafeRawBufferPointer(prefix))
        _ = try ahead.read(input, into: sealed.baseAddress! + 4, count: n, atFrameStart: false)
        return try opener.open(prefix: UnsafeRawBufferPointer(prefix),
                               UnsafeRawBufferPointer(rebasing: sealed[4..<(4 + n)]), into: buffer).0
    }

    /// Serves an authenticated stream until the peer closes, sealing and
    /// opening its frames with `keys` if given; then ends the session
    /// (interrupting calls still blocked, closing the handles).
    public func serve(keys: SessionKeys?) -> End {
        var sealer: FrameSealer?
        if let keys {
            let pair = keys.forServer()
            sealer = pair.seal
            opener = pair.open
            sealed = .allocate(byteCount: Wire.maxSealedLength, alignment: 16)
        }
        let session = Session(root: root, output: output, sealer: sealer,
                              limits: limits.fitting(descriptorLimit: Int(raiseDescriptorLimit())))
        defer { session.end() }
        var call = session.takeCall()
        var applied = AppliedCredentials()
        while true {
            let n: Int
            do {
                guard let got = try readFrame(into: call.request, for: call) else { return .closedByPeer }
                n = got
                try call.begin(length: n)
            } catch let e as WireError {
                return .protocolError(e.description)
            } catch let e as Errno {
                return e == .connectionReset ? .closedByPeer : .ioError(e)
            } catch { return .protocolError("\(error)") }
            session.closeDeferred()
            if call.r.op.isHandshake { return .protocolError("handshake op \(call.r.op) after the handshake") }
            let runner = HomeOps.runner(call)
            if runner != .reader {
                if runner == .lockOwner ? session.runOnLockOwner(call) : session.runOnThread(call) {
                    call = session.takeCall()
                    continue
                }
                // Too many calls blocked already, or no thread to be had.
                guard session.reply(call, result: -Int64(EAGAIN), payloadLength: 0) else { return .closedByPeer }
                continue
            }
            let (result, length) = session.execute(call, applied: &applied)
            // The client may exit without reading replies to its last releases.
            guard session.reply(call, result: result, payloadLength: length) else { return .closedByPeer }
        }
    }
}
