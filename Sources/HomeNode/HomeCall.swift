import CShim
import Glibc
import Synchronization
import SysKit
import Wire

/// One request being executed at home, with the buffers it runs in.
///
/// The session's reader fills `request`, then either runs the call itself
/// (inline) or hands the whole object to a thread of its own (a call that
/// may block). Whoever holds it is its only user, so the buffers need no
/// lock; the objects are reused from the session's free list, so executing
/// a call allocates nothing. `cancelled` and `thread` are the only fields
/// other threads touch (the `cancel` op), and they are atomics.
final class HomeCall: @unchecked Sendable {
    unowned let session: Session
    let request: UnsafeMutableRawBufferPointer
    let response: UnsafeMutableRawBufferPointer
    /// Joined paths and parent names (see `ExportRoot`).
    let scratch: UnsafeMutableRawBufferPointer
    /// The request, once `begin` has checked it.
    private(set) var r: RequestView!
    /// Where the response payload goes.
    var out: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: response[ResponseEncoder.payloadOffset...])
    }
    /// Handles acquired by this call (released by `finish`).
    private var held: (CInt, CInt, CInt) = (-1, -1, -1)
    /// Set by `cancel`: an interrupted syscall then returns EINTR instead of
    /// being retried.
    let cancelled = Atomic<Bool>(false)
    /// The thread executing the call while it may block (0 otherwise).
    let thread = Atomic<UInt>(0)
    /// The credentials the call acts with (nil: the deputy's own, unchanged).
    var credentials: HomeCredentials?
    /// The pipe a large file read's payload waits in (see `SplicePipe`).
    var splice: SplicePipe?
    /// No pipe could be had for this call object: its reads copy.
    var spliceUnavailable = false
    /// The pipe a large write's payload to a stream waits in, spliced
    /// there by the reader (see `SplicePipe.fill`).
    var inbound: SplicePipe?
    /// No pipe could be had for that: its writes copy.
    var inboundUnavailable = false
    /// Its reply has gone already (`Session.replyNow`): no second one.
    var repliedEarly = false

    init(session: Session) {
        self.session = session
        request = .allocate(byteCount: Wire.maxFrameLength, alignment: 16)
        response = .allocate(byteCount: Wire.maxFrameLength, alignment: 16)
        scratch = .allocate(byteCount: ExportRoot.scratchSize, alignment: 16)
    }

    deinit {
        request.deallocate()
        response.deallocate()
        scratch.deallocate()
    }

    /// Checks the `length` bytes read into `request` as a request.
    func begin(length: Int) throws(WireError) {
        r = try RequestView(frame: UnsafeRawBufferPointer(rebasing: request[0..<length]))
        cancelled.store(false, ordering: .relaxed)
        repliedEarly = false
        credentials = session.credentials.forRequest(r.id)
    }

    /// Set while a lock owner's thread runs the call: that thread has a
    /// descriptor table of its own, so the session's descriptors are not
    /// its to close (see `LockOwners`).
    var onLockOwner = false

    /// Releases what the call acquired.
    func finish() {
        release(held.0)
        release(held.1)
        release(held.2)
        held = (-1, -1, -1)
    }

    private func release(_ fd: CInt) {
        guard fd >= 0, session.handles.mustClose(afterReleasing: fd) else { return }
        if onLockOwner { session.closeLater(fd) } else { Glibc.close(fd) }
    }

    // MARK: Arguments

    /// A handle scalar naming one of this session's descriptors, held until
    /// the call ends (a concurrent `close` cannot free its number).
    func handle(_ value: Int64) throws(Errno) -> CInt {
        let fd = try session.handles.acquire(value)
        if held.0 < 0 { held.0 = fd } else if held.1 < 0 { held.1 = fd } else if held.2 < 0 { held.2 = fd } else {
            session.handles.release(fd)
            preconditionFailure("a home handler acquired more than three handles")
        }
        return fd
    }

    /// A directory scalar: the export root (nil) or a handle.
    func dir(_ value: Int64) throws(Errno) -> CInt? {
        value == Wire.rootDir ? nil : try handle(value)
    }

    /// A byte count, bounded by the payload space.
    func count(_ value: Int64) throws(Errno) -> Int {
        guard value >= 0 else { throw Errno.invalidArgument }
        return Int(min(value, Int64(min(out.count, Wire.maxPayload))))
    }

    /// The payload as one path.
    func path() throws(Errno) -> UnsafePointer<CChar> {
        do { return try r.path().baseAddress!.assumingMemoryBound(to: CChar.self) } catch { throw Errno.invalidArgument }
    }

    /// The payload as two paths.
    func paths() throws(Errno) -> (UnsafePointer<CChar>, UnsafePointer<CChar>) {
        do {
            let (a, b) = try r.twoPaths()
            return (a.baseAddress!.assumingMemoryBound(to: CChar.self), b.baseAddress!.assumingMemoryBound(to: CChar.self))
        } catch { throw Errno.invalidArgument }
    }

    /// The NUL-terminated string at payload offset `offset`, and the offset after it.
    func string(at offset: Int) throws(Errno) -> (UnsafeRawBufferPointer, Int) {
        do { return try r.cString(at: offset) } catch { throw Errno.invalidArgument }
    }

    /// Scalar `i` as an int (flags, modes, commands).
    func int(_ i: Int) -> Int32 { Int32(truncatingIfNeeded: r.scalar(i)) }

    // MARK: The export root, with this call's scratch

    /// Opens inside the export root; an open that waits (a FIFO) ends with
    /// EINTR once the call is cancelled.
    func open(dir: CInt?, _ path: UnsafePointer<CChar>, flags: Int32, mode: UInt32, resolve: UInt64 = 0) throws(Errno) -> CInt {
        try untilCancelled { () throws(Errno) in
            try session.root.open(dir: dir, path, flags: flags, mode: mode, resolve: resolve, scratch: scratch)
        }
    }

    func withEntry<R>(dir: CInt?, _ path: UnsafePointer<CChar>, slot: Int = 0,
                      _ body: (CInt, UnsafePointer<CChar>) throws(Errno) -> R) throws(Errno) -> R {
        try session.root.withEntry(dir: dir, path, slot: slot, scratch: scratch, body)
    }

    func withObject<R>(dir: CInt?, _ path: UnsafePointer<CChar>, follow: Bool,
                       _ body: (CInt, UnsafePointer<CChar>, Int32) throws(Errno) -> R) throws(Errno) -> R {
        try session.root.withObject(dir: dir, path, follow: follow, scratch: scratch, body)
    }

    /// Runs a libc-style syscall that may block, as `sys` does, except that
    /// EINTR ends it once the call is cancelled (see `untilCancelled`).
    @inline(__always) @discardableResult
    func interruptible<T: FixedWidthInteger>(_ call: () -> T) throws(Errno) -> T {
        try untilCancelled { () throws(Errno) in try sysOnce(call) }
    }

    /// Runs `body`, again after each EINTR, until it succeeds, fails
    /// otherwise, or the call is cancelled (then EINTR; a cancel that came
    /// before `body` started means it never starts).
    @inline(__always)
    func untilCancelled<T>(_ body: () throws(Errno) -> T) throws(Errno) -> T {
        while true {
            if cancelled.load(ordering: .acquiring) { throw Errno.interrupted }
            do { return try body() } catch {
                if error != .interrupted { throw error }
            }
        }
    }
}
