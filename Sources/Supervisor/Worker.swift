import CShim
import Glibc
import SysKit
import Wire

/// One supervisor thread: receives notifications and handles them with its
/// own preallocated buffers. Several workers share one listener so a call
/// blocked at home never stalls the others.
final class Worker: @unchecked Sendable {
    // Everything here is touched only by this worker's thread after init
    // (the slot's reply buffer is handed over by HomeLink's protocol).
    /// Strong on purpose: workers run until the process exits, and the
    /// supervisor must outlive every call they are handling.
    let supervisor: Supervisor
    let slot: HomeLink.Slot
    /// This worker's slot on the supervisor's local deputy (emulated calls).
    let localSlot: HomeLink.Slot
    let notification = UnsafeMutablePointer<cshim_notif>.allocate(capacity: 1)
    /// Normalized paths for routing.
    let normalized = UnsafeMutableRawBufferPointer.allocate(byteCount: 2 * Int(PATH_MAX) + 2, alignment: 8)
    /// Length of the last path routed into `normalized`.
    var normalizedLength = 0
    /// iovec arrays, stat conversions, second paths.
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024 * 16 + Int(PATH_MAX), alignment: 16)

    init(supervisor: Supervisor, slot: HomeLink.Slot, localSlot: HomeLink.Slot) {
        self.supervisor = supervisor
        self.slot = slot
        self.localSlot = localSlot
    }

    deinit {
        notification.deallocate()
        normalized.deallocate()
        scratch.deallocate()
    }

    func run() {
        let listener = supervisor.listener
        while true {
            do {
                try listener.receive(into: notification)
            } catch {
                switch error {
                case .interrupted:
                    continue
                case .noSuchFileOrDirectory:
                    // The notifying task died before we read it, or every
                    // tracee is gone (then the listener hangs up: stop
                    // rather than spin).
                    if listener.hasHungUp() { return }
                    continue
                default:
                    return   // listener gone
                }
            }
            handle()
        }
    }

    private func handle() {
        let sup = supervisor
        // Counted until the call's statistics are in: the answer may let the
        // program exit before this worker has counted it.
        sup.callsInFlight.wrappingAdd(1, ordering: .relaxed)
        defer { sup.callsInFlight.wrappingSubtract(1, ordering: .releasing) }
        let call = Call(notification, worker: self)
        let id = call.id
        guard let row = sup.table.row(for: call.nr) else {
            // Not in the table: cannot happen with a filter built from it.
            _ = try? sup.listener.continueSyscall(id: id)
            return
        }
        let reply: Reply
        do throws(Failure) {
            reply = try row.handler(call)
        } catch {
            sup.stats.count(row: row.index, forwarded: true)
            switch error {
            case .errno(let e):
                _ = try? sup.listener.respond(id: id, value: 0, error: -e.rawValue)
            case .transport:
                // Files whose home is gone fail with EIO (sockets will say ENOTCONN).
                _ = try? sup.listener.respond(id: id, value: 0, error: -EIO)
            }
            return
        }
        switch reply {
        case .continueSyscall:
            sup.stats.count(row: row.index, forwarded: false)
            _ = try? sup.listener.continueSyscall(id: id)
        case .value(let v):
            sup.stats.count(row: row.index, forwarded: true)
            _ = try? sup.listener.respond(id: id, value: v, error: 0)
        case .answered:
            sup.stats.count(row: row.index, forwarded: true)
        }
    }
}
