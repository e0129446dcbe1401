import CShim
import Glibc
import SysKit
import Wire

/// A read reply's payload moved at home without a copy through user
/// memory: the file's pages go into the call's pipe (`HomeCall.spliceRead`),
/// and from there onto the stream right after the reply's header
/// (`Session.reply`). Only on unsealed streams (a sealed payload must pass
/// through the cipher), only from files (a stream's read may wait and be
/// cancelled), and only for reads of at least `threshold` bytes (below it
/// two more syscalls cost more than the copy they save).
final class SplicePipe {
    let readEnd: CInt, writeEnd: CInt
    /// Payload bytes in the pipe, waiting for their reply.
    var pending = 0
    /// Payload bytes after those, copied into the call's response buffer
    /// (a read whose pages did not all fit in the pipe).
    var tail = 0

    static let threshold = 64 << 10

    /// A pipe that holds a whole payload; nil when none can be had (the
    /// user's pipe allowance is spent): reads then copy.
    init?() {
        var fds: (CInt, CInt) = (-1, -1)
        let rc = withUnsafeMutableBytes(of: &fds) {
            cshim_pipe_sized($0.baseAddress!.assumingMemoryBound(to: CInt.self), CInt(Wire.maxPayload))
        }
        guard rc == 0 else { return nil }
        (readEnd, writeEnd) = fds
    }

    deinit {
        Glibc.close(readEnd)
        Glibc.close(writeEnd)
    }

    /// Moves the pending payload onto `stream`, then the tail from `out`;
    /// false if the stream failed (the session is over then).
    func drain(into stream: CInt, tailFrom out: UnsafeMutableRawBufferPointer) -> Bool {
        defer { tail = 0 }
        while pending > 0 {
            let n = cshim_splice(readEnd, nil, stream, pending, 0)
            if n > 0 {
                pending -= n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                return false
            }
        }
        return tail == 0 || (try? FD.writeFully(stream, out.baseAddress!, tail)) != nil
    }
}

extension HomeCall {
    /// Reads up to `want` bytes of `fd` (at `offset`, or at its file offset
    /// when nil) into the call's pipe, for the reply to splice after its
    /// header; returns the count. Nil when the read should copy instead: a
    /// sealed session, a small read, a stream, no pipe, or a file that
    /// cannot splice. When the pipe is full (a read not aligned to pages
    /// spans one page more than it holds) the rest is read by copying. An
    /// error after some bytes moved ends the read short, as read(2) would.
    func spliceRead(_ fd: CInt, _ want: Int, at offset: Int64?) throws(Errno) -> Int? {
        guard want >= SplicePipe.threshold, session.splices, session.handles.kind(r.scalar(0)) == .file,
              let pipe = splicePipe() else { return nil }
        var position = offset ?? 0
        var got = 0
        while got < want {
            let n = withUnsafeMutablePointer(to: &position) { p in
                cshim_splice(fd, offset == nil ? nil : p, pipe.writeEnd, want - got, 1)
            }
            if n > 0 {
                got += n
                continue
            }
            if n == 0 { break }
            let e = lastErrno()
            if e == .interrupted { continue }
            if e == .resourceTemporarilyUnavailable && got > 0 {
                let rest = offset == nil ? Glibc.read(fd, out.baseAddress, want - got)
                    : Glibc.pread(fd, out.baseAddress, want - got, off_t(position))
                if rest > 0 {
                    pipe.tail = rest
                    got += rest
                }
                break
            }
            if got > 0 { break }
            if e == .invalidArgument { return nil }
            throw e
        }
        pipe.pending = got - pipe.tail
        return got
    }

    /// The call's pipe, made on its first large read (nil if none can be
    /// had; not tried again for this call object).
    private func splicePipe() -> SplicePipe? {
        if let splice { return splice }
        if spliceUnavailable { return nil }
        splice = SplicePipe()
        spliceUnavailable = splice == nil
        return splice
    }
}
