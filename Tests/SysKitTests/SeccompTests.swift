import CShim
import Glibc
import SysKit
import Testing

/// The C mirrors of the kernel's seccomp/openat2 structs must match the
/// kernel's sizes: the ioctl numbers encode them and the kernel copies them.
@Suite struct StructMirrorTests {
    @Test func sizes() {
        #expect(MemoryLayout<cshim_seccomp_data>.size == 64)
        #expect(MemoryLayout<cshim_notif>.size == 80)
        #expect(MemoryLayout<cshim_notif_resp>.size == 24)
        #expect(MemoryLayout<cshim_notif_addfd>.size == 24)
        #expect(MemoryLayout<cshim_open_how>.size == 24)
    }

    @Test func offsets() {
        #expect(MemoryLayout<cshim_notif>.offset(of: \.pid) == 8)
        #expect(MemoryLayout<cshim_notif>.offset(of: \.data) == 16)
        #expect(MemoryLayout<cshim_seccomp_data>.offset(of: \.instruction_pointer) == 8)
        #expect(MemoryLayout<cshim_seccomp_data>.offset(of: \.args) == 16)
        #expect(MemoryLayout<cshim_notif_resp>.offset(of: \.error) == 16)
        #expect(MemoryLayout<cshim_notif_addfd>.offset(of: \.newfd_flags) == 20)
    }
}

/// A traced program under a real seccomp user-notification filter.
@Suite struct TracedSpawnTests {
    struct OpenatCall: Sendable { var path: String; var flags: UInt64; var validAfterRead: Bool }

    /// openat and getcwd are notified, read (path argument) and CONTINUEd;
    /// the program runs to completion with its normal effects.
    @Test func notifyReadAndContinue() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let input = dir.write("in.txt", "tether-notify-test\n")
        let output = dir.file("out.txt")
        let pwdOut = dir.file("pwd.txt")

        let numbers = Recorder<Int32>()
        let opens = Recorder<OpenatCall>()
        let arches = Recorder<UInt32>()
        let run = try runTraced(
            ["/bin/sh", "-c", "/usr/bin/cat '\(input)' > '\(output)' && cd '\(dir.path)' && /usr/bin/pwd > '\(pwdOut)'"],
            notify: [NR_getcwd, NR_openat]
        ) { listener, n in
            numbers.append(n.data.nr)
            arches.append(n.data.arch)
            if n.data.nr == NR_openat {
                let path = try readPath(n, argIndex: 1)
                opens.append(OpenatCall(path: path, flags: n.data.args.2, validAfterRead: listener.isValid(id: n.id)))
            }
            try listener.continueSyscall(id: n.id)
        }

        #expect(run.problems.isEmpty, "\(run.problems)")
        #expect(!run.timedOut)
        #expect(run.status == 0)
        // Every notification is one of the filtered syscalls, on the native ABI.
        #expect(numbers.all.allSatisfy { $0 == NR_getcwd || $0 == NR_openat }, "\(numbers.all)")
        #expect(arches.all.allSatisfy { $0 == AUDIT_ARCH_X86_64 })
        #expect(numbers.all.contains(NR_getcwd))   // /usr/bin/pwd
        // cat opened the input read-only; sh opened the output for writing.
        let byPath = Dictionary(opens.all.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        let inCall = try #require(byPath[input], "no openat for \(input) in \(opens.all.map(\.path))")
        #expect(Int32(truncatingIfNeeded: inCall.flags) & O_ACCMODE == O_RDONLY)
        let outCall = try #require(byPath[output], "no openat for \(output)")
        #expect(Int32(truncatingIfNeeded: outCall.flags) & O_CREAT != 0)
        #expect(opens.all.allSatisfy { $0.validAfterRead })
        // CONTINUE really ran the syscalls.
        #expect(contents(output) == "tether-notify-test\n")
        #expect(contents(pwdOut) == dir.path + "\n")
    }

    /// getppid answered by the supervisor with a made-up value.
    @Test func answerWithValue() throws {
        let seen = Recorder<Int32>()
        let run = try runTraced(
            ["/usr/bin/python3", "-I", "-S", "-c", "import os,sys; sys.exit(0 if os.getppid()==4242 else 1)"],
            notify: [NR_getppid]
        ) { listener, n in
            seen.append(n.data.nr)
            try listener.respond(id: n.id, value: 4242, error: 0)
        }
        #expect(run.problems.isEmpty, "\(run.problems)")
        #expect(!run.timedOut)
        #expect(run.status == 0)
        #expect(!seen.all.isEmpty && seen.all.allSatisfy { $0 == NR_getppid })
    }

    /// getcwd answered with -ENOENT: Python sees FileNotFoundError.
    @Test func answerWithErrno() throws {
        let script = """
            import os, sys
            try:
                os.getcwd()
            except FileNotFoundError:
                sys.exit(3)
            sys.exit(0)
            """
        let seen = Recorder<Int32>()
        let run = try runTraced(["/usr/bin/python3", "-I", "-S", "-c", script], notify: [NR_getcwd]) { listener, n in
            seen.append(n.data.nr)
            try listener.respond(id: n.id, value: 0, error: -ENOENT)
        }
        #expect(run.problems.isEmpty, "\(run.problems)")
        #expect(!run.timedOut)
        #expect(run.status == 3)
        #expect(!seen.all.isEmpty)
    }

    /// ADDFD: the openat of a nonexistent path is answered with a socket the
    /// supervisor made ("hello\n", then EOF); cat copies it to its stdout.
    @Test func installDescriptor() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let output = dir.file("out.txt")
        let fake = "/nonexistent-tether-test"
        let installed = Recorder<CInt>()
        let others = Recorder<String>()
        let run = try runTraced(
            ["/bin/sh", "-c", "/usr/bin/cat \(fake) > '\(output)'"],
            notify: [NR_openat]
        ) { listener, n in
            let path = try readPath(n, argIndex: 1)
            guard path == fake else {
                others.append(path)
                try listener.continueSyscall(id: n.id)
                return
            }
            let (r, w) = makeChannel()
            defer { close(r) }
            try FD.writeFully(w, Array("hello\n".utf8))
            close(w)
            let cloexec = Int32(truncatingIfNeeded: n.data.args.2) & O_CLOEXEC != 0
            installed.append(try listener.installAndRespond(id: n.id, source: r, closeOnExec: cloexec))
        }
        #expect(run.problems.isEmpty, "\(run.problems)")
        #expect(!run.timedOut)
        #expect(run.status == 0)
        #expect(installed.all.count == 1 && installed.all.allSatisfy { $0 >= 0 }, "\(installed.all)")
        #expect(others.all.contains(output))   // sh's own redirection went through CONTINUE
        #expect(contents(output) == "hello\n")
    }

    /// execve failures are reported with the child's errno and stage 4.
    /// The filter also notifies execve and exit_group: the shim's own
    /// syscalls in the child must still be answered (CONTINUE) by the spawn.
    @Test(arguments: [[NR_getppid], [59, 231, NR_openat]])
    func spawnFailures(notify: [Int32]) throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let filter = try SeccompFilter(notify: notify)
        let plain = dir.write("not-executable", "#!/bin/sh\nexit 0\n", mode: 0o644)

        for (path, expected) in [(dir.file("missing"), ENOENT), (plain, EACCES)] {
            do {
                let (pid, listener, keeper) = try Spawn.traced(path: path, argv: [path], env: [], filter: filter, nofileSoft: -1)
                Issue.record("spawn of \(path) succeeded (pid \(pid))")
                kill(pid, SIGKILL)
                _ = waitBounded(pid: pid, keeper: keeper, timeoutMs: 5000)
                close(listener.fd)
            } catch {
                #expect(error.errno == Errno(rawValue: expected), "\(path): \(error.errno)")
                #expect(error.stage == 4, "\(path)")
            }
        }
    }
}
