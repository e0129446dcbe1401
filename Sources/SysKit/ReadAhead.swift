import Glibc

/// Reads frames from a stream with as few read(2) calls as it can: one
/// read takes a small frame whole (its header and its body) and whatever
/// of the next frames came with it; what is asked beyond the buffered
/// bytes and is at least the buffer's size goes straight to its
/// destination. One reader at a time (the owner's reading thread).
public struct ReadAhead: ~Copyable {
    private let buffer: UnsafeMutableRawBufferPointer
    private var start = 0, end = 0

    /// A read-ahead of `bytes` (a few small frames; large frames bypass it).
    public init(bytes: Int) {
        buffer = .allocate(byteCount: bytes, alignment: 16)
    }

    deinit { buffer.deallocate() }

    /// Bytes read from the stream and not yet taken: a caller that waits
    /// for the stream to become readable must not wait while there are any.
    public var buffered: Int { end - start }

    /// Takes up to `count` of the bytes read ahead, for the caller to use
    /// before its next call on this read-ahead.
    public mutating func take(upTo count: Int) -> UnsafeRawBufferPointer {
        let k = min(count, end - start)
        defer { start += k }
        return UnsafeRawBufferPointer(rebasing: buffer[start..<(start + k)])
    }

    /// Fills `dst` with exactly `count` bytes of `fd`'s stream. False on a
    /// clean end of stream before the first byte when `atFrameStart`; an
    /// end of stream anywhere else is EIO.
    public mutating func read(_ fd: CInt, into dst: UnsafeMutableRawPointer, count: Int,
                              atFrameStart: Bool) throws(Errno) -> Bool {
        var got = 0
        while got < count {
            if start < end {
                let k = min(count - got, end - start)
                (dst + got).copyMemory(from: buffer.baseAddress! + start, byteCount: k)
                start += k
                got += k
                continue
            }
            let left = count - got
            if left >= buffer.count {
                if try FD.readFully(fd, dst + got, left) { return true }
                if got == 0 && atFrameStart { return false }
                throw .ioError
            }
            start = 0
            end = 0
            let n = try sys { Glibc.read(fd, buffer.baseAddress!, buffer.count) }
            if n == 0 {
                if got == 0 && atFrameStart { return false }
                throw .ioError
            }
            end = n
        }
        return true
    }
}
