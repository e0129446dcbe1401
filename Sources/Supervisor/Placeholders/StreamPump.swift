import CShim
import Glibc
import SysKit
import Wire

/// A stream view of a forwarded file, for a descriptor number the filter
/// does not watch for data calls (dup2 onto 3 … base-1, e.g. a shell's
/// `exec 3<file`). The tracee's plain read and write on it run natively on
/// the socket; the watcher thread pumps the other end: what the tracee
/// writes goes home at the file's offset, and the file's data is read
/// ahead (at most `readAhead`) into the socket for the tracee to read.
/// Every intercepted call that uses the file's offset, through any
/// descriptor of the file (including copies of the view on 0–2), first
/// sends home what the view holds and takes back its unread read-ahead
/// (`Call.withExactOffset`), so offsets stay shared as after dup(2). Other
/// calls on the view (fstat, lseek, …) are forwarded like any placeholder's.
final class StreamPump: @unchecked Sendable {
    // Touched only by the watcher thread, which alone runs `pump`.
    let readable: Bool
    let writable: Bool
    private var pending: [UInt8] = []
    private(set) var endOfFile = false
    private var reportedLoss = false
    static let readAhead = 64 * 1024

    init(accessMode: Int32) {
        readable = accessMode != O_WRONLY
        writable = accessMode != O_RDONLY
    }

    /// Moves data both ways; false once the tracee has closed the view.
    /// Holds the owner's lock, so calls that need the exact offset wait.
    func pump(_ p: Placeholder, events: UInt32, slot: HomeLink.Slot) -> Bool {
        guard let owner = p.owner else { return true }
        return owner.views.withLock { _ in
            if events & CSHIM_EPOLLIN != 0 && !drainWrites(p, slot) { return false }
            if events & CSHIM_EPOLLOUT != 0 && readable && !endOfFile { fillReads(p, slot) }
            return true
        }
    }

    /// Takes back what was read ahead but not yet sent into the socket;
    /// returns its length. Under the owner's lock.
    func takePending() -> Int {
        let n = pending.count
        pending.removeAll(keepingCapacity: true)
        return n
    }

    /// Sends home everything the tracee has written; false at end of stream.
    /// Under the owner's lock.
    func drainWrites(_ p: Placeholder, _ slot: HomeLink.Slot) -> Bool {
        let buf = slot.payload(for: .write)
        while true {
            let n = recv(p.supervisorEnd, buf.baseAddress, min(buf.count, Wire.maxPayload), Int32(MSG_DONTWAIT))
            if n == 0 { return false }
            if n < 0 { return Glibc.errno == EAGAIN || Glibc.errno == EINTR }
            var left = n
            while left > 0 {
                guard let r = try? p.link.call(slot, .write, Scalars(p.handle), payloadLength: left), r.result > 0 else {
                    reportLoss(left)
                    break
                }
                let written = Int(r.result)
                left -= written
                if left > 0 { memmove(buf.baseAddress!, buf.baseAddress! + written, left) }
            }
        }
    }

    /// Reads ahead from home into the socket until it is full or the file ends.
    private func fillReads(_ p: Placeholder, _ slot: HomeLink.Slot) {
        while true {
            if !pending.isEmpty {
                let n = pending.withUnsafeBytes { send(p.supervisorEnd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
                if n < 0 { return }   // full: wait for the next EPOLLOUT
                pending.removeFirst(n)
                if !pending.isEmpty { return }
            }
            let queued = Int(cshim_socket_unread(p.supervisorEnd))
            let room = Self.readAhead - max(queued, 0)
            if room < 4096 { return }
            guard let r = try? p.link.call(slot, .read, Scalars(p.handle, Int64(room))), r.result >= 0 else {
                finish(p)
                return
            }
            if r.result == 0 {
                finish(p)
                return
            }
            let n = send(p.supervisorEnd, r.payload.baseAddress, r.payload.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            let sent = max(n, 0)
            if sent < r.payload.count { pending.append(contentsOf: r.payload[sent...]) }
        }
    }

    /// End of file (or a read error) at home: the tracee's reads see end of file.
    private func finish(_ p: Placeholder) {
        endOfFile = true
        shutdown(p.supervisorEnd, Int32(SHUT_WR))
    }

    private func reportLoss(_ bytes: Int) {
        if reportedLoss { return }
        reportedLoss = true
        printError("wrap-and-run: \(bytes) bytes written through a descriptor alias could not be written at home")
    }
}
