import CShim
import Glibc
import SysKit
import Testing

// MARK: - ProgramCheck (libelf)

/// A minimal ELF header: 52 bytes for ELFCLASS32, 64 for ELFCLASS64,
/// little-endian, ET_EXEC, no program or section headers.
func elfHeader(class64: Bool, machine: UInt16) -> [UInt8] {
    var b: [UInt8] = [0x7f, 0x45, 0x4c, 0x46, class64 ? 2 : 1, 1, 1, 0] + [UInt8](repeating: 0, count: 8)
    func u16(_ v: UInt16) { b += [UInt8(v & 0xff), UInt8(v >> 8)] }
    func u32(_ v: UInt32) { for i in 0..<4 { b.append(UInt8((v >> (8 * UInt32(i))) & 0xff)) } }
    func addr(_ v: UInt64) { for i in 0..<(class64 ? 8 : 4) { b.append(UInt8((v >> (8 * UInt64(i))) & 0xff)) } }
    u16(2)                  // e_type ET_EXEC
    u16(machine)            // e_machine
    u32(1)                  // e_version
    addr(0)                 // e_entry
    addr(0)                 // e_phoff
    addr(0)                 // e_shoff
    u32(0)                  // e_flags
    u16(class64 ? 64 : 52)  // e_ehsize
    u16(class64 ? 56 : 32)  // e_phentsize
    u16(0)                  // e_phnum
    u16(class64 ? 64 : 40)  // e_shentsize
    u16(0)                  // e_shnum
    u16(0)                  // e_shstrndx
    return b
}

extension ProgramCheck: CustomStringConvertible {
    public var description: String {
        switch self {
        case .ok: return "ok"
        case .script: return "script"
        case .wrongClass: return "wrongClass"
        case .wrongMachine(let m): return "wrongMachine(\(m))"
        case .notELF: return "notELF"
        }
    }
}

@Suite struct ProgramCheckTests {
    @Test func classifiesFiles() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        #expect(elfHeader(class64: false, machine: 3).count == 52)
        #expect(elfHeader(class64: true, machine: 183).count == 64)

        #expect(try ProgramCheck.check(path: "/bin/ls").description == "ok")
        #expect(try ProgramCheck.check(path: dir.write("script.sh", "#!/bin/sh\necho hi\n", mode: 0o755)).description == "script")
        #expect(try ProgramCheck.check(path: "/etc/hostname").description == "notELF")
        #expect(try ProgramCheck.check(path: dir.write("text", "just some text, long enough to not be an ELF header at all\n")).description == "notELF")
        #expect(try ProgramCheck.check(path: dir.write("empty", "")).description == "notELF")
        #expect(try ProgramCheck.check(path: dir.write("elf32", elfHeader(class64: false, machine: 3))).description == "wrongClass")
        // The crafted ELF64 header is accepted by libelf: with x86_64 it is .ok ...
        #expect(try ProgramCheck.check(path: dir.write("elf64-x86", elfHeader(class64: true, machine: 62))).description == "ok")
        // ... so aarch64 is reported as the wrong machine, with its number.
        #expect(try ProgramCheck.check(path: dir.write("elf64-arm", elfHeader(class64: true, machine: 183))).description == "wrongMachine(183)")
    }

    @Test func unreadableFilesThrow() {
        #expect(throws: Errno(rawValue: ENOENT)) { try ProgramCheck.check(path: "/nonexistent-tether-test") }
        #expect(throws: Errno(rawValue: EISDIR)) { try ProgramCheck.check(path: "/tmp") }
    }
}

// MARK: - pidfds

@Suite struct PidFDTests {
    /// pidfd_getfd copies the child's fd 3, which Spawn.plain made from our socket end.
    @Test func getFDFromChild() throws {
        let (r, w) = makeChannel()
        defer { close(r); close(w) }
        let pid = try Spawn.plain(path: "/bin/sleep", argv: ["sleep", "5"], env: [], keep: [r])
        defer {
            kill(pid, SIGKILL)
            let status = ExitStatus.wait(pid: pid)
            #expect(status == 128 + SIGKILL)
        }

        let pidfd = try PidFD.open(tid: pid)
        defer { close(pidfd) }
        let copy = try PidFD.getFD(pidfd, 3)
        defer { close(copy) }
        #expect(copy != r)
        let mine = try FD.inode(r), theirs = try FD.inode(copy)
        #expect(theirs.ino == mine.ino)
        #expect(theirs.isSocket && mine.isSocket)
        #expect(cshim_fcntl_int(copy, F_GETFD, 0) & FD_CLOEXEC != 0)
        // Same open file description, not just the same pipe.
        #expect(cshim_kcmp_file(getpid(), pid, r, 3) == 0)
        #expect(cshim_kcmp_file(getpid(), pid, w, 3) != 0)
        // The child has nothing at fd 40.
        #expect(throws: Errno(rawValue: EBADF)) { try PidFD.getFD(pidfd, 40) }
        // The pidfd is not readable while the child lives.
        #expect(!pollReadable(pidfd, timeoutMs: 0))
    }
}

// MARK: - TraceeMemory on this process

@Suite struct TraceeMemoryTests {
    let me = TraceeMemory(pid: getpid())

    @Test func writeThenRead() throws {
        let source: [UInt8] = (0..<200).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
        var target = [UInt8](repeating: 0, count: 200)
        var back = [UInt8](repeating: 0, count: 200)
        try target.withUnsafeMutableBytes { t in
            let address = UInt64(UInt(bitPattern: t.baseAddress!))
            try source.withUnsafeBytes { s in try me.write(address, from: s.baseAddress!, count: s.count) }
            try back.withUnsafeMutableBytes { b in try me.readExactly(address, into: b.baseAddress!, count: b.count) }
        }
        #expect(target == source)
        #expect(back == source)
    }

    /// Two pages; the second made inaccessible (PROT_NONE rather than
    /// munmap, so no concurrent mmap in the test process can fill the hole).
    func withGuardedPage(_ body: (UnsafeMutableRawPointer) throws -> Void) rethrows {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let base = mmap(nil, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
        precondition(base != MAP_FAILED)
        defer { munmap(base, 2 * page) }
        precondition(mprotect(base + page, page, PROT_NONE) == 0)
        try body(base + page)   // the end of the readable page
    }

    func readString(_ address: UnsafeRawPointer, capacity: Int) throws -> String {
        var buf = [UInt8](repeating: 0xAA, count: capacity)
        let len = try buf.withUnsafeMutableBytes { b in
            try me.readCString(UInt64(UInt(bitPattern: address)), into: b)
        }
        #expect(buf[len] == 0)
        return String(decoding: buf[0..<len], as: UTF8.self)
    }

    @Test func stringEndingAtUnmappedPage() throws {
        try withGuardedPage { end in
            let s = end - 4
            s.copyMemory(from: "abc\0", byteCount: 4)
            #expect(try readString(s, capacity: 64) == "abc")
            #expect(try readString(s, capacity: 4) == "abc")   // exact fit: 3 bytes + NUL
            // A plain read across the boundary stops at it.
            var buf = [UInt8](repeating: 0, count: 16)
            let got = try buf.withUnsafeMutableBytes { b in
                try me.read(UInt64(UInt(bitPattern: s)), into: b.baseAddress!, count: 16)
            }
            #expect(got == 4)
            #expect(throws: Errno.badAddress) {
                try buf.withUnsafeMutableBytes { b in
                    try me.readExactly(UInt64(UInt(bitPattern: s)), into: b.baseAddress!, count: 16)
                }
            }
        }
    }

    @Test func stringRunningIntoUnmappedPage() {
        withGuardedPage { end in
            let s = end - 4
            s.copyMemory(from: "abcd", byteCount: 4)
            #expect(throws: Errno.badAddress) { try readString(s, capacity: 64) }
            #expect(throws: Errno.badAddress) { try readString(end, capacity: 64) }
        }
    }

    @Test func tooLongAndNull() throws {
        let text = Array("abcdefgh\0".utf8)
        try text.withUnsafeBytes { (t) throws in
            #expect(throws: Errno.fileNameTooLong) { try readString(t.baseAddress!, capacity: 4) }
            #expect(try readString(t.baseAddress!, capacity: 9) == "abcdefgh")
        }
        var buf = [UInt8](repeating: 0, count: 8)
        #expect(throws: Errno.badAddress) {
            try buf.withUnsafeMutableBytes { b in _ = try me.readCString(0, into: b) }
        }
    }
}

// MARK: - KeyFile

@Suite struct KeyFileTests {
    let key32 = Array("0123456789abcdef0123456789ABCDEF".utf8)

    func problem(_ path: String) -> String? {
        do { _ = try KeyFile.load(path); return nil } catch { return error.description }
    }

    @Test func loadsAndRejects() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let open = dir.write("open", key32 + [10], mode: 0o644)
        #expect(problem(open)?.contains("permissions") == true, "\(problem(open) ?? "accepted")")
        let short = dir.write("short", Array(key32.dropLast()) + [10])
        #expect(problem(short)?.contains("31 bytes") == true, "\(problem(short) ?? "accepted")")
        let good = dir.write("good", key32 + [10])
        #expect(try KeyFile.load(good) == key32)
        let noNewline = dir.write("nonl", key32)
        #expect(try KeyFile.load(noNewline) == key32)
        #expect(problem(dir.file("missing"))?.contains("cannot read") == true)
    }
}

// MARK: - TCP and endpoints

@Suite struct NetTests {
    @Test func loopbackRoundTrip() throws {
        let listener = try TCP.listen(Endpoint(host: "127.0.0.1", port: 0))
        defer { close(listener) }
        let port = TCP.localPort(listener)
        #expect(port > 0)

        let client = try TCP.connect(Endpoint(host: "127.0.0.1", port: port), timeoutMs: 5000)
        defer { close(client) }
        #expect(pollReadable(listener, timeoutMs: 5000))
        let (server, peer) = try TCP.accept(listener)
        defer { close(server) }
        #expect(peer.hasPrefix("127.0.0.1:"))

        try FD.writeFully(client, Array("ping!".utf8))
        var got = [UInt8](repeating: 0, count: 5)
        #expect(pollReadable(server, timeoutMs: 5000))
        #expect(try got.withUnsafeMutableBytes { b in try FD.readFully(server, b.baseAddress!, 5) })
        #expect(got == Array("ping!".utf8))

        try FD.writeFully(server, Array("pong?".utf8))
        #expect(pollReadable(client, timeoutMs: 5000))
        #expect(try got.withUnsafeMutableBytes { b in try FD.readFully(client, b.baseAddress!, 5) })
        #expect(got == Array("pong?".utf8))

        // A clean EOF before the first byte is `false`.
        shutdown(server, Int32(SHUT_WR))
        #expect(pollReadable(client, timeoutMs: 5000))
        #expect(try got.withUnsafeMutableBytes { b in try FD.readFully(client, b.baseAddress!, 5) } == false)
    }

    @Test func connectionRefused() throws {
        let listener = try TCP.listen(Endpoint(host: "127.0.0.1", port: 0))
        let port = TCP.localPort(listener)
        close(listener)
        do {
            let fd = try TCP.connect(Endpoint(host: "127.0.0.1", port: port), timeoutMs: 5000)
            close(fd)
            Issue.record("connect to closed port \(port) succeeded")
        } catch {
            guard case .system(let e) = error else { Issue.record("unexpected \(error)"); return }
            #expect(e == Errno(rawValue: ECONNREFUSED))
        }
    }

    @Test func parsesEndpoints() {
        let v4 = Endpoint(parsing: "127.0.0.1:7455")
        #expect(v4?.host == "127.0.0.1" && v4?.port == 7455)
        let v6 = Endpoint(parsing: "[::1]:80")
        #expect(v6?.host == "::1" && v6?.port == 80)
        #expect(v6?.description == "[::1]:80")
        #expect(Endpoint(parsing: "node7:7455")?.host == "node7")
        #expect(Endpoint(parsing: "host:99999") == nil)
        #expect(Endpoint(parsing: "nocolon") == nil)
        #expect(Endpoint(parsing: ":80") == nil)
        #expect(Endpoint(parsing: "host:") == nil)
    }
}
