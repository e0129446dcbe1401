import CShim
import Glibc
import SysKit

extension Supervisor {
    /// Rows the ptrace tracer must not run itself: their handlers wait for
    /// something other than a reply from home (a pump's turn, a socket's
    /// message, a copy's other side), which a tracer asleep there could
    /// hold up for ever, or they change the tracee (exec, memory,
    /// credentials) in ways the workers' path already orders. Sockets and
    /// devices are left to the workers as a family (`.network`, ioctl).
    static let leftToWorkers: Set<String> = [
        "accept", "accept4", "socket", "socketpair", "sendfile", "splice", "copy_file_range", "ioctl",
        "io_uring_setup", "pidfd_getfd", "inotify_add_watch", "execve", "execveat", "mmap",
    ]

    /// Under the ptrace engine: gives the tracer a worker of its own and has
    /// it run the stops of the file and descriptor rows itself (see
    /// `PtraceTracer`), which saves a forwarded call two thread wake-ups
    /// (tracer → worker, worker → tracer). False when no slot can be had;
    /// the workers then take every stop, as before.
    @discardableResult
    func runStopsOnTracer(_ tracer: PtraceTracer) -> Bool {
        guard let slot = link.takeSlot() else { return false }
        guard let localSlot = localLink.takeSlot() else {
            link.returnSlot(slot)
            return false
        }
        guard slot.wakeThroughDescriptor(), localSlot.wakeThroughDescriptor() else {
            link.returnSlot(slot)
            localLink.returnSlot(localSlot)
            return false
        }
        let worker = Worker(supervisor: self, slot: slot, localSlot: localSlot, duty: tracer)
        var eligible = [Bool](repeating: false, count: 512)
        for row in table.rows where Int(row.nr) < eligible.count {
            let name = String(describing: row.name)
            eligible[Int(row.nr)] = !row.classes.contains(.network) && !row.classes.contains(.creds)
                && !Self.leftToWorkers.contains(name)
        }
        // The last number placements may use: they skip it while it is taken.
        tracer.keepChannels(at: descriptorLimit - 1)
        tracer.handleInline(.init(eligible: eligible) { n in worker.handleOnTracer(n) })
        return true
    }
}
