import CShim
import Glibc
import Synchronization
import SysKit
import Wire

/// execve and execveat. The policy decides on the program's path as on any
/// other (a `deny` rule refuses it with its errno, also through a symlink).
/// A local program is the kernel's to run. A program at home (a `forward`
/// or `copy` path) runs as a copy: it is fetched into the `ValueCache`
/// (ELF class and machine checked on the fetched file), put in the tracee
/// as descriptor N, and the name the tracee passed is overwritten in its
/// memory with "/dev/fd/N", which the kernel then executes. The descriptor
/// is close-on-exec for an ELF program; a `#!` script keeps it open, since
/// its interpreter opens the script by that name. A name shorter than
/// "/dev/fd/N" (`./a.out`) cannot hold it: the call fails with EACCES and
/// the reason is said once on stderr (running the target's file of that
/// name instead would run another program than the one asked for). Set-id
/// bits at home are not honoured (the tracee runs under no_new_privs):
/// said once on stderr.
enum Exec {
    /// Implements execve(2).
    static func execve(_ c: borrowing Call) throws(Failure) -> Reply {
        try execCommon(c, pathArg: 0, dirfd: AT_FDCWD, emptyPath: false)
    }

    /// Implements execveat(2).
    static func execveat(_ c: borrowing Call) throws(Failure) -> Reply {
        try execCommon(c, pathArg: 1, dirfd: c.fd(0), emptyPath: c.int(4) & CSHIM_AT_EMPTY_PATH != 0)
    }

    private static func execCommon(_ c: borrowing Call, pathArg: Int, dirfd: Int32, emptyPath: Bool) throws(Failure) -> Reply {
        let (route, len) = try c.routePath(arg: pathArg, dirfd: dirfd, into: c.worker.slot.payload(for: .openat),
                                           allowEmpty: emptyPath)
        guard case .forward = route, let to = route.destination, len > 1 else { return .continueSyscall }
        // The name as the tracee wrote it: how many bytes there are to overwrite.
        let original = try local { () throws(Errno) in
            try c.memory.readCString(c.address(pathArg), into: UnsafeMutableRawBufferPointer(rebasing: c.worker.scratch[0..<Int(PATH_MAX)]))
        }
        // Too short a name to hold "/dev/fd/N" (see above).
        guard original >= 9 else { throw c.sup.nameTooShort(for: c.worker.normalized, c.worker.normalizedLength) }
        guard let (program, mode) = try ByValue.object(c, to: to, pathLength: len) else {
            // A directory or device at home: what the kernel says of it.
            throw .errno(.permissionDenied)
        }
        var source = program
        defer { Glibc.close(source) }
        guard mode & 0o111 != 0 else { throw .errno(.permissionDenied) }
        let check = (try? ProgramCheck.check(path: "/proc/self/fd/\(source)")) ?? .notELF
        switch check {
        case .ok, .script: break
        case .wrongClass, .wrongMachine, .notELF: throw .errno(.execFormatError)
        }
        if mode & (S_ISUID | S_ISGID) != 0 { c.sup.noteSetIdOnce(String(decoding: c.worker.normalized[0..<c.worker.normalizedLength], as: UTF8.self)) }
        if check == .script, let variant = try homeInterpreter(c, script: source) {
            Glibc.close(source)
            source = variant
        }
        // "/dev/fd/" is 8 bytes: the number must fit in what the name has
        // left. A free number with few enough digits, when the lowest free
        // one might not.
        var at: Int32?
        if original < 11 {
            let largest: Int32 = original == 9 ? 9 : 99
            let tid = c.tid
            guard let free = (Int32(3)...largest).first(where: { !PidFD.isOpen(tid: tid, $0) }) else {
                throw c.sup.nameTooShort(for: c.worker.normalized, c.worker.normalizedLength)
            }
            at = free
        }
        let fd = try local { () throws(Errno) in
            try c.sup.listener.install(id: c.id, source: source, closeOnExec: check == .ok, at: at)
        }
        var name: (UInt64, UInt64, UInt64) = (0, 0, 0)
        let n = withUnsafeMutableBytes(of: &name) { b -> Int in
            let text = Array("/dev/fd/\(fd)".utf8)
            b.copyBytes(from: text)
            b[text.count] = 0
            return text.count
        }
        // (A lowest free number above 999 with a name of 11 bytes or more.)
        guard n <= original else { throw c.sup.nameTooShort(for: c.worker.normalized, c.worker.normalizedLength) }
        try withUnsafeBytes(of: &name) { (b) throws(Failure) in
            try overwrite(c, at: c.address(pathArg), with: UnsafeRawBufferPointer(rebasing: b[0...n]))
        }
        c.worker.decided = .copy
        return .continueSyscall
    }

    /// For a `#!` script whose interpreter the policy sends home: the
    /// interpreter fetched into the cache like any home program, and a
    /// variant of the script (in the cache too) whose `#!` line names the
    /// cached interpreter, which the target's kernel can then run. Nil when
    /// the interpreter is the target's.
    private static func homeInterpreter(_ c: borrowing Call, script: CInt) throws(Failure) -> CInt? {
        var st = stat()
        guard fstat(script, &st) == 0 else { throw .errno(lastErrno()) }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        guard bytes.withUnsafeMutableBytes({ pread(script, $0.baseAddress, $0.count, 0) }) == bytes.count else {
            throw .errno(.ioError)
        }
        // "#!" INTERPRETER [ARG] "\n", as the kernel reads it.
        let end = bytes.firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
        var i = 2
        let blank = { (b: UInt8) in b == UInt8(ascii: " ") || b == UInt8(ascii: "\t") }
        while i < end && blank(bytes[i]) { i += 1 }
        let start = i
        while i < end && !blank(bytes[i]) { i += 1 }
        let interpreter = Array(bytes[start..<i])
        guard interpreter.first == UInt8(ascii: "/"), interpreter.count < Int(PATH_MAX) - 1 else { return nil }
        let verdict = interpreter.withUnsafeBytes { c.sup.policy.decide($0) }
        switch verdict.binding {
        case .local: return nil
        case .deny:
            c.worker.decided = .denied
            throw .errno(Errno(rawValue: verdict.errno))
        case .forward, .copy: break
        }
        // Routed as an absolute name from the root, as routePath leaves one.
        let payload = c.worker.slot.payload(for: .openat)
        payload.copyBytes(from: interpreter)
        payload[interpreter.count] = 0
        c.worker.normalized.copyBytes(from: interpreter)
        c.worker.normalizedLength = interpreter.count
        let home = Destination(dir: Wire.rootDir, keep: nil, isLocal: false)
        guard let (interp, mode) = try ByValue.object(c, to: home, pathLength: interpreter.count + 1) else {
            throw .errno(.permissionDenied)
        }
        defer { Glibc.close(interp) }
        guard mode & 0o111 != 0 else { throw .errno(.permissionDenied) }
        guard case .ok = (try? ProgramCheck.check(path: "/proc/self/fd/\(interp)")) ?? .notELF else {
            throw .errno(.execFormatError)
        }
        var object = [UInt8](repeating: 0, count: Int(PATH_MAX))
        let n = object.withUnsafeMutableBytes { b in
            Glibc.readlink("/proc/self/fd/\(interp)", b.baseAddress!.assumingMemoryBound(to: CChar.self), b.count)
        }
        guard n > 0 else { throw .errno(lastErrno()) }
        let variant = Array("#!".utf8) + object[0..<n] + Array(bytes[i...])
        return try local { () throws(Errno) in
            let name = try c.sup.valueCache.store(variant)
            return try sys { Glibc.open(c.sup.valueCache.objectPath(name), O_RDONLY | O_CLOEXEC) }
        }
    }

    /// Writes `bytes` into the tracee at `address`: with process_vm_writev,
    /// or, for a name in read-only memory (a string constant), through
    /// /proc/TID/mem, which writes to a private copy of the page as a
    /// debugger's breakpoint does.
    private static func overwrite(_ c: borrowing Call, at address: UInt64, with bytes: UnsafeRawBufferPointer) throws(Failure) {
        do { try c.memory.write(address, from: bytes.baseAddress!, count: bytes.count); return } catch {}
        let mem = Glibc.open("/proc/\(c.tid)/mem", O_RDWR | O_CLOEXEC)
        guard mem >= 0 else { throw .errno(lastErrno()) }
        defer { Glibc.close(mem) }
        guard pwrite(mem, bytes.baseAddress, bytes.count, off_t(Int64(bitPattern: address))) == bytes.count else {
            throw .errno(lastErrno())
        }
    }
}

extension ProgramCheck: Equatable {
    public static func == (a: ProgramCheck, b: ProgramCheck) -> Bool {
        switch (a, b) {
        case (.ok, .ok), (.script, .script), (.wrongClass, .wrongClass), (.notELF, .notELF): return true
        case (.wrongMachine(let x), .wrongMachine(let y)): return x == y
        default: return false
        }
    }
}

extension Supervisor {
    /// Says once per session that a program run from home has set-id bits
    /// that do not apply.
    /// The failure of an exec whose name cannot hold "/dev/fd/N": EACCES,
    /// and (once) why on stderr, with the way round it.
    func nameTooShort(for normalized: UnsafeMutableRawBufferPointer, _ length: Int) -> Failure {
        if !shortNameNoted.exchange(true, ordering: .relaxed) {
            let path = String(decoding: normalized[0..<length], as: UTF8.self)
            printError("wrap-and-run: cannot run \(path) from home: the name the program passed to execve is shorter "
                       + "than /dev/fd/N, which must replace it in the program's memory; run it by its full name "
                       + "(\(path)) instead\n")
        }
        return .errno(.permissionDenied)
    }

    func noteSetIdOnce(_ path: String) {
        guard !setIdNoted.exchange(true, ordering: .relaxed) else { return }
        printError("wrap-and-run: note: \(path) is set-user-ID or set-group-ID at home; "
                   + "it runs with the caller's credentials (no_new_privs)")
    }
}
