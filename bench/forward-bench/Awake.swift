import Foundation
import Glibc
import Synchronization

/// `--keep-cpus-awake`: a busy loop at SCHED_IDLE on every CPU for the whole
/// run. On a VM an idle vCPU halts, and waking it costs tens of microseconds;
/// these loops keep every vCPU running, as guest halt-polling or a busy
/// machine would, yet take no CPU from anything else (SCHED_IDLE runs only
/// where nothing else would). Both engines run under the same condition;
/// the ptrace engine gains most, its resumed tracee being woken onto the CPU
/// it stopped on (README, Engines).
enum KeepCPUsAwake {
    private static let spins = Atomic<UInt64>(0)

    static func start() {
        let count = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        for _ in 0..<count {
            Thread {
                var param = sched_param(sched_priority: 0)
                let schedIdle: Int32 = 5   // SCHED_IDLE (linux/sched.h)
                guard sched_setscheduler(0, schedIdle, &param) == 0 else { return }
                while true { spins.wrappingAdd(1, ordering: .relaxed) }
            }.start()
        }
    }
}
