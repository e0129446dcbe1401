import CShim
import Dispatch
import Glibc
import SysKit

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
