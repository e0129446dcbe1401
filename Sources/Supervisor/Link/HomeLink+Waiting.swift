import CShim
import Dispatch
import Glibc
import SysKit
import Wire

extension HomeLink.Slot {
    /// Sleeps until `wake` (true) or for `microseconds` (false; nil: no
    /// limit). The tracer's worker (`Worker.duty`), whose slot wakes it
    /// through `wakeFD`, serves the tracer meanwhile: a tracer asleep here
    /// would hold up every other tracee thread's stop.
    func sleep(microseconds: Int?, for worker: Worker?) -> Bool {
        guard wakeFD >= 0, let duty = worker?.duty else {
            guard let microseconds else { ready.wait(); return true }
            return ready.wait(timeout: .now() + .microseconds(microseconds)) == .success
        }
        let deadline = microseconds.map { monotonicMicroseconds() + $0 }
        while true {
            var timeout: Int32 = -1
            if let deadline {
                let left = deadline - monotonicMicroseconds()
                if left <= 0 { return false }
                timeout = Int32((left + 999) / 1000)
            }
            let (woken, work) = pollEither(wakeFD, duty.servingFD, timeout: timeout)
            if woken {
                cshim_drain(wakeFD)
                return true
            }
            if work { duty.serve() }
        }
    }

    /// Makes `wake` write an eventfd `sleep` can watch beside the tracer's
    /// work (for the tracer's worker's slots, before their first call).
    func wakeThroughDescriptor() -> Bool {
        wakeFD = cshim_wake_fd()
        return wakeFD >= 0
    }
}

/// A call's waiting for its reply: parked calls, signals, cancels.
extension HomeLink {
    /// Calls waiting that are not parked.
    var activeCalls: Int { waiting.load(ordering: .relaxed) - parkedCount.load(ordering: .relaxed) }

    /// Marks the slot's call parked (once per call).
    func park(_ slot: Slot) {
        if !slot.parked.exchange(true, ordering: .relaxed) { parkedCount.wrappingAdd(1, ordering: .relaxed) }
    }

    /// A watched call has waited one more interval without its reply: it
    /// is parked from now on, and if its thread has a signal to take, home
    /// is asked to interrupt it (fire and forget: the request's own reply
    /// says how it ended).
    func waitedWithoutReply(_ slot: Slot, _ watcher: inout SignalWatch) {
        park(slot)
        if watcher.signalArrived() {
            slot.cancelSent = true
            sendDetached(.cancel, Scalars(Int64(bitPattern: watcher.request)))
        }
    }

    /// Asks home to interrupt the call in flight on `slot`, if any, as a
    /// signal would (its own reply says how it ended).
    func cancelCall(on slot: Slot) {
        let id = slot.pending.load(ordering: .acquiring)
        if id != 0 { sendDetached(.cancel, Scalars(Int64(bitPattern: id))) }
    }

    /// Calls waiting for home's reply, parked ones (blocked at home) too.
    var callsAtHome: Int { waiting.load(ordering: .relaxed) }
}
