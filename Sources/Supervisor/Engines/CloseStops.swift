import Glibc
import SysKit
import Synchronization

// Closes under the ptrace engine.
//
// The table's close row is there for two things: an unwaited write's error
// is close's (`WriteBehind`), and any close of a file releases the
// process's POSIX locks on it (`Locks.close`). A process that has neither
// gains nothing from its closes stopping, and under ptrace each stop costs
// a round of the tracer's calls (about a quarter of a forwarded
// open+close). So the ptrace filter lets close run, and a process's closes
// of placeholder numbers stop from the moment one of them must be seen:
// before its first unwaited write and its first POSIX lock, the tracer adds
// the close filter (the close row alone) to every thread of the process
// (`PtraceTracer.addFilter`). Which process inherited it is not followed:
// each adds it at its own first need, and a copy added where one was
// inherited (a child forked after its parent's first write) changes
// nothing, as both trace the same closes.
//
// Under seccomp a process cannot have a second listener, so its filter
// keeps the close row from the start.
extension Supervisor {
    /// close(2) (x86_64).
    static let closeSyscall: Int32 = 3

    /// The close filter (see above); nil if it cannot be built.
    static func makeCloseFilter(placeholderBase base: Int32) -> SeccompFilter? {
        let rules = SyscallTable.x86_64.filterRules(placeholderBase: base).filter { $0.nr == closeSyscall }
        return try? SeccompFilter(rules: rules, trace: true)
    }
}

extension Call {
    /// Makes this call's process's closes of placeholder numbers stop from
    /// now on (see above); false if they cannot be made to (the write then
    /// waits for its answer, the lock is refused).
    func seeCloses() throws(Failure) -> Bool {
        guard case .ptrace(let tracer) = sup.listener else { return true }
        let process = try thread().process
        if process.closesStop.load(ordering: .acquiring) { return true }
        guard let filter = sup.closeFilter else { return false }
        do throws(Errno) {
            try tracer.addFilter(id: id, filter)
        } catch {
            if error != .noSuchFileOrDirectory && error != .noSuchProcess
                && !sup.closeFilterNoted.exchange(true, ordering: .relaxed) {
                printError("wrap-and-run: note: cannot make the closes of process \(process.tgid) stop "
                           + "(\(String(cString: strerror(error.rawValue)))): its writes to home files wait for "
                           + "their answers, and its POSIX locks at home are refused (ENOLCK)")
            }
            return false
        }
        process.closesStop.store(true, ordering: .releasing)
        return true
    }
}
