import CShim
import Glibc

/// A waiting call's watch on its tracee thread: each wait of
/// `nextWaitMicroseconds` without a reply ends with a look at the thread's
/// pending signals (/proc/TID/status). Fires once.
struct SignalWatch {
    let tid: pid_t
    /// The request to cancel when it fires.
    let request: UInt64
    private var fired = false
    private var looks = 0

    init(tid: pid_t, request: UInt64) {
        self.tid = tid
        self.request = request
    }

    /// Whether there is still something to watch.
    var active: Bool { tid > 0 && !fired }

    var nextWaitMicroseconds: Int {
        looks < HomeLink.signalCheckBackoffAfter ? HomeLink.signalCheckMicroseconds : HomeLink.signalCheckLaterMicroseconds
    }

    /// True (once) when the thread has a signal pending that it does not block.
    mutating func signalArrived() -> Bool {
        looks += 1
        guard active, cshim_task_signals(tid, nil) > 0 else { return false }
        fired = true
        return true
    }
}
