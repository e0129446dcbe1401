/// What a reply may say, given the request it answers: the client checks
/// every reply against it before a byte reaches the tracee, so a home that
/// lies (or a bug) can never make the client write past a buffer or
/// report more than was asked for.
///
/// - A negative result is an errno (-4095 ... -1) and carries no payload.
/// - A byte count never exceeds what was asked, and the payload is exactly
///   that count.
/// - A fixed-size struct is exactly its size.
/// - Ops that return no data return no payload.
public enum ReplyContract {
    /// The largest path a reply carries (chdir, getcwd): PATH_MAX.
    public static let maxPath = 4096
    /// Size of the x86_64 `struct statfs` in a `statfs` reply.
    public static let statfsSize = 120
    /// Size of the x86_64 `struct flock` in `lock` and `posixLock` replies.
    public static let flockSize = 32
    /// MSG_TRUNC in a `recvfrom` request's flags: the result is the datagram's full length.
    public static let recvfromTruncate: Int64 = 0x20

    /// Nil if `result` and `payloadCount` are a possible reply to `op` with
    /// `scalars` and `requestPayload` bytes of payload; otherwise what is wrong.
    public static func violation(op: Op, scalars s: Scalars, requestPayload: Int,
                                 result: Int64, payloadCount: Int) -> String? {
        if result < 0 {
            if result < -4095 { return "result \(result) is not an errno" }
            return payloadCount == 0 ? nil : "an error reply carries \(payloadCount) bytes"
        }
        func count(upTo limit: Int64) -> String? {
            if result > max(limit, 0) { return "result \(result) exceeds the \(limit) bytes asked for" }
            return payloadCount == Int(result) ? nil : "result \(result) with \(payloadCount) bytes of payload"
        }
        func exactly(_ size: Int) -> String? {
            payloadCount == size ? nil : "\(payloadCount) bytes where the struct is \(size)"
        }
        func empty() -> String? {
            payloadCount == 0 ? nil : "\(payloadCount) bytes of payload where none is due"
        }
        switch op {
        case .read, .pread, .getdents64, .readlinkat:
            return count(upTo: s[1])
        case .getxattr, .listxattr:
            // Size 0 asks only for the length.
            if s[2] == 0 { return payloadCount == 0 ? nil : "a length query returned \(payloadCount) bytes" }
            return count(upTo: s[2])
        case .fstat, .statx:
            return exactly(Wire.statxSize)
        case .statxWatched:
            if result == 0 || result == 1 { return exactly(Wire.statxSize) }
            return result == 2 ? empty() : "statxWatched result \(result) is not 0, 1 or 2"
        case .statfs:
            return exactly(statfsSize)
        case .lock, .posixLock:
            return exactly(flockSize)
        case .chdir, .getcwd:
            return payloadCount <= maxPath ? nil : "a path of \(payloadCount) bytes"
        case .echo:
            return exactly(Int(clamping: s[0]))
        case .write, .pwrite, .streamWrite:
            if result > Int64(requestPayload) { return "wrote \(result) of \(requestPayload) bytes" }
            return empty()
        case .getsockopt:
            return count(upTo: min(s[3], Int64(Wire.maxSockopt)))
        case .sockname:
            // The result is the address's full length; the payload is what fits.
            if result > Int64(Wire.maxSockaddr) { return "an address of \(result) bytes" }
            return payloadCount == Int(min(result, max(s[2], 0))) ? nil : "address of \(result) bytes with \(payloadCount) bytes of payload"
        case .recvfrom:
            // With MSG_TRUNC the result is the datagram's full length; the bytes carried stop at the size asked.
            let truncates = s[1] & recvfromTruncate != 0
            if result > max(s[2], 0) && !truncates { return "result \(result) exceeds the \(s[2]) bytes asked for" }
            let address = payloadCount - Int(min(result, max(s[2], 0), Int64(Wire.maxPayload - Wire.maxSockaddr)))
            return address >= 0 && address <= Wire.maxSockaddr ? nil : "\(result) bytes with \(payloadCount) bytes of payload"
        case .sendto, .sendtoPath:
            if result > Int64(requestPayload) { return "sent \(result) of \(requestPayload) bytes" }
            return empty()
        case .accept:
            return payloadCount <= Wire.maxSockaddr ? nil : "a peer address of \(payloadCount) bytes"
        case .openat:
            return payloadCount == 0 || payloadCount == 1 ? nil : "an open reply with \(payloadCount) bytes"
        case .ioctl:
            return exactly(IoctlLayout.of(s[1])?.output ?? 0)
        case .windowSize:
            return exactly(IoctlLayout.winsizeSize)
        case .terminalOffer:
            let path = payloadCount - Wire.terminalSecretSize
            return path > 0 && path <= maxPath ? nil : "a terminal offer of \(payloadCount) bytes"
        case .copyFileRange:
            if result > max(s[4], 0) { return "copied \(result) of \(s[4]) bytes" }
            return empty()
        case .sendfile:
            if result > max(s[3], 0) { return "sent \(result) of \(s[3]) bytes" }
            return empty()
        default:
            return empty()
        }
    }
}
