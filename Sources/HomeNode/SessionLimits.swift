/// What one session may hold at home, so that no client (a key holder, or
/// a program gone wrong) can exhaust the deputy: open handles, calls in
/// flight off the reader, and so the bytes buffered for them.
public struct SessionLimits: Sendable, Equatable {
    /// Handles open at once; one more open is EMFILE to the program.
    public var maxOpen: Int
    /// Calls running at once besides the reader's (those that may block:
    /// FIFOs, sockets, lock waits); one more is EAGAIN to the program.
    /// Each holds at most a request and a reply frame, so the bytes a
    /// session buffers stay below 2 × maxInflight × Wire.maxFrameLength.
    public var maxInflight: Int

    public static let defaultMaxOpen = 16_384
    public static let defaultMaxInflight = 1024

    public init(maxOpen: Int = SessionLimits.defaultMaxOpen, maxInflight: Int = SessionLimits.defaultMaxInflight) {
        self.maxOpen = maxOpen
        self.maxInflight = maxInflight
    }

    /// `maxOpen` kept below half the descriptor limit the deputy has, so
    /// the session's own handles never starve its other descriptors.
    public func fitting(descriptorLimit: Int) -> SessionLimits {
        var l = self
        if descriptorLimit > 0 { l.maxOpen = max(16, min(maxOpen, descriptorLimit / 2)) }
        return l
    }
}
