import CShim
import Dispatch
import Foundation
import Glibc
import SysKit

// Shared helpers for the SysKit tests. Everything that can block is bounded:
// a bug in the shim must fail a test, never hang `swift test`.

/// A thread-safe list, filled by the supervisor thread, read by the test.
final class Recorder<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T] = []
    func append(_ item: T) { lock.lock(); items.append(item); lock.unlock() }
    var all: [T] { lock.lock(); defer { lock.unlock() }; return items }
}

/// A fresh private directory under /tmp (realpath'd), removed by `cleanup`.
struct TempDir {
    let path: String
    init() {
        var template = Array("/tmp/syskit-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { b -> String in
            precondition(mkdtemp(b.baseAddress!) != nil, "mkdtemp failed")
            return String(cString: b.baseAddress!)
        }
        // /tmp may be a symlink; the tracee's getcwd reports the resolved path.
        if let r = realpath(made, nil) {
            path = String(cString: r)
            free(r)
        } else {
            path = made
        }
    }
    func file(_ name: String) -> String { "\(path)/\(name)" }
    func cleanup() { try? FileManager.default.removeItem(atPath: path) }

    /// Writes `bytes` to `name` with mode `mode` (chmod'ed explicitly: umask must not matter).
    @discardableResult
    func write(_ name: String, _ bytes: [UInt8], mode: mode_t = 0o600) -> String {
        let p = file(name)
        let fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        precondition(fd >= 0, "open \(p): errno \(errno)")
        bytes.withUnsafeBytes { b in precondition(Glibc.write(fd, b.baseAddress, b.count) == b.count) }
        Glibc.close(fd)
        precondition(chmod(p, mode) == 0)
        return p
    }
    @discardableResult
    func write(_ name: String, _ text: String, mode: mode_t = 0o600) -> String {
        write(name, Array(text.utf8), mode: mode)
    }
}

/// Whole contents of a file as text ("" if unreadable).
func contents(_ path: String) -> String {
    guard let bytes = try? FD.readSmallFile(path) else { return "" }
    return String(decoding: bytes, as: UTF8.self)
}

/// A connected pair of close-on-exec stream sockets (FD.socketPair), used
/// where a pipe would do: Glibc does not import pipe2, and close-on-exec must
/// be atomic because tests run in parallel and every spawn forks this process.
func makeChannel() -> (CInt, CInt) {
    try! FD.socketPair()
}

/// Waits until `fd` polls readable (or hung up); false on timeout.
func pollReadable(_ fd: CInt, timeoutMs: Int32) -> Bool {
    var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    while true {
        let n = poll(&pfd, 1, timeoutMs)
        if n < 0 && errno == EINTR { continue }
        return n == 1
    }
}

/// Waits for `pid` to exit within `timeoutMs` (via a pidfd); on timeout kills
/// it. Returns the shell-style status from ExitStatus.wait and whether it timed out.
/// Waits for a traced program (which is its keeper's child, not ours): its
/// status comes from the keeper, which then ends.
func waitBounded(pid: pid_t, keeper: Keeper, timeoutMs: Int32) -> (status: Int32, timedOut: Bool) {
    let pidfd = cshim_pidfd_open(pid, 0)
    var timedOut = false
    if pidfd >= 0 {
        if !pollReadable(pidfd, timeoutMs: timeoutMs) {
            timedOut = true
            kill(pid, SIGKILL)
        }
        Glibc.close(pidfd)
    } else {
        // pidfd_open is part of what is under test; without it, do not risk an unbounded wait.
        timedOut = true
        kill(pid, SIGKILL)
    }
    let status = keeper.programExit() ?? 125
    keeper.release()
    return (status, timedOut)
}

/// The outcome of one supervised run.
struct TracedRun {
    var status: Int32
    var timedOut: Bool
    /// Errors raised in the supervisor loop (each one is a test failure).
    var problems: [String]
}

/// Spawns `argv` under a filter notifying `notify`, and supervises it on a
/// background thread: every notification goes to `handle`, which must answer
/// it. Waits (bounded) for the program to exit and for the thread to finish.
func runTraced(
    _ argv: [String],
    notify: [Int32],
    env: [String] = ["PATH=/usr/bin:/bin", "LC_ALL=C"],
    timeoutMs: Int32 = 20_000,
    handle: @escaping @Sendable (SeccompListener, cshim_notif) throws -> Void
) throws -> TracedRun {
    let filter = try SeccompFilter(notify: notify)
    let (pid, listener, keeper) = try Spawn.traced(path: argv[0], argv: argv, env: env, filter: filter, nofileSoft: -1)

    let problems = Recorder<String>()
    let stop = Recorder<Bool>()
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
        defer { done.signal() }
        var n = cshim_notif()
        while stop.all.isEmpty {
            var pfd = pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&pfd, 1, 50)
            if r < 0 { if errno == EINTR { continue }; problems.append("poll: errno \(errno)"); return }
            if r == 0 { continue }
            if pfd.revents & Int16(POLLIN) == 0 { return }   // POLLHUP: no task left on the filter
            do throws(Errno) { try listener.receive(into: &n) } catch {
                if error == .noSuchFileOrDirectory || error == .interrupted { continue }   // tracee died
                problems.append("receive: \(error)")
                return
            }
            do { try handle(listener, n) } catch {
                problems.append("handler (nr \(n.data.nr)): \(error)")
                try? listener.continueSyscall(id: n.id)
            }
        }
    }
    thread.start()

    let (status, timedOut) = waitBounded(pid: pid, keeper: keeper, timeoutMs: timeoutMs)
    stop.append(true)
    if done.wait(timeout: .now() + 10) == .timedOut {
        problems.append("supervisor thread did not finish")   // leak the listener rather than close it under the thread
    } else {
        Glibc.close(listener.fd)
    }
    return TracedRun(status: status, timedOut: timedOut, problems: problems.all)
}

/// The path argument (args[argIndex]) of a notified syscall, read from the tracee.
func readPath(_ n: cshim_notif, argIndex: Int) throws -> String {
    let address: UInt64
    switch argIndex {
    case 0: address = n.data.args.0
    case 1: address = n.data.args.1
    default: address = n.data.args.2
    }
    var buf = [UInt8](repeating: 0, count: Int(PATH_MAX))
    let len = try buf.withUnsafeMutableBytes { b throws(Errno) in
        try TraceeMemory(pid: pid_t(n.pid)).readCString(address, into: b)
    }
    return String(decoding: buf[0..<len], as: UTF8.self)
}

let AUDIT_ARCH_X86_64: UInt32 = 0xC000_003E
let NR_getcwd: Int32 = 79
let NR_openat: Int32 = 257
let NR_getppid: Int32 = 110
