import CShim
import Glibc
import SysKit
import Wire

/// A read reply's payload moved at home without a copy through user
/// memory: the file's pages go into the call's pipe (`HomeCall.spliceRead`),
/// and from there onto the stream right after the reply's header
/// (`Session.reply`). Only on unsealed streams (a sealed payload must pass
/// through the cipher), and only for reads of at least `threshold` bytes
/// (below it two more syscalls cost more than the copy they save). A
/// socket's, FIFO's or terminal's pages come the same way
/// (`spliceStreamRead`: a pumped socket's down chunks, above all).
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
    init?(bytes: Int = Wire.maxPayload) {
        var fds: (CInt, CInt) = (-1, -1)
        let rc = withUnsafeMutableBytes(of: &fds) {
            cshim_pipe_sized($0.baseAddress!.assumingMemoryBound(to: CInt.self), CInt(bytes))
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
        guard want >= SplicePipe.threshold, session.splices, let kind = session.handles.kind(r.scalar(0)),
              let pipe = splicePipe() else { return nil }
        if kind == .stream { return offset == nil ? try spliceStreamRead(fd, want, pipe) : nil }
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

    /// `spliceRead` from a stream: one splice, which waits as read(2) does
    /// (for the first byte, not for `want`; EINTR ends it once the call is
    /// cancelled) and moves what is there, up to what the empty pipe holds
    /// (the stream's pieces, a slot each). Nil, with nothing read, when
    /// `fd` takes no splice.
    private func spliceStreamRead(_ fd: CInt, _ want: Int, _ pipe: SplicePipe) throws(Errno) -> Int? {
        let n: Int
        do {
            n = try interruptible { cshim_splice(fd, nil, pipe.writeEnd, want, 0) }
        } catch {
            if error == .invalidArgument { return nil }
            throw error
        }
        pipe.pending = n
        pipe.tail = 0
        return n
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

/// A large write to a stream (a pumped socket's chunk, above all) whose
/// payload goes from the session's stream into a pipe and from there into
/// the handle, without a copy through user memory: the reader splices it
/// in (`fill`), the call's thread splices it out (`HomeCall.writeInbound`).
/// Unsealed streams only (the reader opens sealed frames whole).
extension SplicePipe {
    /// Where a write request's payload starts (header and handle).
    static let writePayloadOffset = RequestEncoder.payloadOffset(.write)

    /// Moves the next `count` bytes of `input` (a write's payload) into the
    /// pipe: first those already read ahead, then spliced from the stream,
    /// until all are in or the pipe has no room left (a slot per piece of
    /// the stream, which may be small). Returns how many are in
    /// (`pending`); the caller reads the rest into the request (`tail`).
    func fill(from input: CInt, ahead: inout ReadAhead, count: Int) throws(Errno) -> Int {
        pending = 0
        tail = 0
        // At most the read-ahead's size: the empty pipe holds them.
        let early = ahead.take(upTo: count)
        var done = 0
        while done < early.count {
            let n = Glibc.write(writeEnd, early.baseAddress! + done, early.count - done)
            if n > 0 {
                done += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                throw n < 0 ? lastErrno() : .ioError
            }
        }
        pending = done
        // Set once the stream was seen readable: a splice that still moves
        // nothing then means the pipe is full.
        var waited = false
        while pending < count {
            let n = cshim_splice(input, nil, writeEnd, count - pending, 1)
            if n > 0 {
                pending += n
                waited = false
                continue
            }
            if n == 0 { throw .ioError }   // the stream ended inside a frame
            let e = lastErrno()
            if e == .interrupted { continue }
            // No room in the pipe, or a stream that takes no splice: the rest is copied.
            if e != .resourceTemporarilyUnavailable || waited { break }
            var p = pollfd(fd: input, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, -1)
            waited = true
        }
        tail = count - pending
        return pending
    }
}

extension HomeCall {
    /// The pipe for a write's payload (see `SplicePipe.fill`): made on the
    /// first large write to a stream, nil if none can be had (not tried
    /// again for this call object). Twice a payload if allowed: a payload
    /// spliced from the stream comes a page a slot at best, with the pieces
    /// of its sender's frames besides, so a pipe of one payload's pages
    /// leaves a tenth of it to copy.
    func inboundPipe() -> SplicePipe? {
        if let inbound { return inbound }
        if inboundUnavailable { return nil }
        inbound = SplicePipe(bytes: 2 * Wire.maxPayload) ?? SplicePipe()
        inboundUnavailable = inbound == nil
        return inbound
    }

    /// Forgets a payload left in the pipe (a call refused or ended early):
    /// it must not precede the next one. The pipe goes with it.
    func dropInbound() {
        guard let inbound else { return }
        if inbound.pending > 0 { self.inbound = nil } else { inbound.tail = 0 }
    }

    /// Writes a payload the reader left in the pipe (then the rest, in the
    /// request after the pipe's share) to `fd`, as write(2) would: the
    /// count written, short if the call was cancelled or `fd` failed after
    /// some bytes. Nil when the payload is all in the request (the caller
    /// writes it), also after bringing it back from the pipe for an `fd`
    /// that takes no splice (a terminal).
    func writeInbound(_ fd: CInt) throws(Errno) -> Int? {
        guard let pipe = inbound, pipe.pending > 0 else { return nil }
        let inPipe = pipe.pending
        let data = UnsafeMutableRawPointer(mutating: r.payload.baseAddress!)
        var done = 0
        while pipe.pending > 0 && !cancelled.load(ordering: .acquiring) {
            let n = cshim_splice(pipe.readEnd, nil, fd, pipe.pending, 0)
            if n > 0 {
                pipe.pending -= n
                done += n
                continue
            }
            let e = n == 0 ? Errno.ioError : lastErrno()
            if e == .interrupted { continue }   // `cancelled` says whether to go on
            if e == .invalidArgument && done == 0 {
                guard (try? FD.readFully(pipe.readEnd, data, inPipe)) == true else { throw .ioError }
                pipe.pending = 0
                pipe.tail = 0
                return nil
            }
            if done > 0 { return done }
            throw e
        }
        if pipe.pending > 0 {
            if done == 0 { throw .interrupted }
            return done
        }
        let tail = pipe.tail
        pipe.tail = 0
        guard tail > 0 else { return done }
        do {
            return try done + interruptible { Glibc.write(fd, data + inPipe, tail) }
        } catch {
            if done > 0 { return done }
            throw error
        }
    }
}
