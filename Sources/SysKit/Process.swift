import CShim
import Glibc

/// Identity facts about a task read from /proc/TID/status.
public struct TaskStatus: Sendable {
    public var tgid: pid_t
    public var ppid: pid_t
    public var umask: UInt32
    /// The filesystem uid and gid (the fourth field of Uid: and Gid:) and
    /// the supplementary groups: what the kernel checks file access with.
    public var fsuid: UInt32 = 0
    public var fsgid: UInt32 = 0
    public var groups: [UInt32] = []

    /// Parses /proc/TID/status; nil if the task is gone.
    public static func read(tid: pid_t) -> TaskStatus? {
        var buf = [UInt8](repeating: 0, count: 4096)
        let fd = cshim_openat(AT_FDCWD, "/proc/\(tid)/status", O_RDONLY | O_CLOEXEC, 0)
        if fd < 0 { return nil }
        defer { Glibc.close(fd) }
        let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { return nil }
        var status = TaskStatus(tgid: tid, ppid: 0, umask: 0o022)
        for line in buf[0..<n].split(separator: UInt8(ascii: "\n")) {
            let text = String(decoding: line, as: UTF8.self)
            func value(_ key: String) -> Substring? {
                guard text.hasPrefix(key) else { return nil }
                return text.dropFirst(key.count).drop { $0 == " " || $0 == "\t" }
            }
            if let v = value("Tgid:"), let x = pid_t(v) { status.tgid = x }
            if let v = value("PPid:"), let x = pid_t(v) { status.ppid = x }
            if let v = value("Umask:"), let x = UInt32(v, radix: 8) { status.umask = x }
            if let v = value("Uid:"), let x = v.split(whereSeparator: { $0 == "\t" || $0 == " " }).last.flatMap({ UInt32($0) }) {
                status.fsuid = x
            }
            if let v = value("Gid:"), let x = v.split(whereSeparator: { $0 == "\t" || $0 == " " }).last.flatMap({ UInt32($0) }) {
                status.fsgid = x
            }
            if let v = value("Groups:") {
                status.groups = v.split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { UInt32($0) }
            }
        }
        return status
    }
}

/// pidfd wrappers.
public enum PidFD {
    /// A pidfd for a thread (PIDFD_THREAD, Linux 6.9+), or for a thread-group
    /// leader on older kernels. Polls readable when that task exits.
    public static func open(tid: pid_t) throws(Errno) -> CInt {
        let fd = cshim_pidfd_open(tid, UInt32(O_EXCL))   // PIDFD_THREAD == O_EXCL
        if fd >= 0 { return fd }
        return try sys { cshim_pidfd_open(tid, 0) }
    }

    /// Whether descriptor `fd` is open in the process of thread `tid`
    /// (kcmp of the descriptor with itself: no descriptor is copied).
    public static func isOpen(tid: pid_t, _ fd: CInt) -> Bool {
        cshim_kcmp_file(tid, tid, fd, fd) == 0
    }

    /// Whether tasks `a` and `b` share one descriptor table (CLONE_FILES).
    public static func shareDescriptorTable(_ a: pid_t, _ b: pid_t) -> Bool {
        cshim_kcmp_files(a, b) == 0
    }

    /// A CLOEXEC copy of the tracee's descriptor `fd`.
    public static func getFD(_ pidfd: CInt, _ fd: CInt) throws(Errno) -> CInt {
        try sysOnce { cshim_pidfd_getfd(pidfd, fd) }
    }
}

/// How a child process ended, as a shell reports it.
public enum ExitStatus {
    /// waitpid for `pid`; returns the exit code, or 128+N for signal N.
    public static func wait(pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if Glibc.errno != EINTR { return 125 }
        }
        return code(status)
    }

    /// A wait status as an exit code: the code, or 128+N for signal N.
    public static func code(_ status: Int32) -> Int32 {
        let sig = status & 0x7f
        if sig == 0 { return (status >> 8) & 0xff }
        return 128 + sig
    }
}

/// The traced program's keeper (see cshim_keeper.c): the process between
/// the supervisor and the program, which reports the program's exit and
/// kills the program's whole process tree when this side lets go of it.
public struct Keeper: Sendable {
    public let socket: CInt
    public let pid: pid_t

    /// Waits for the program's wait status, as an exit code (128+N for
    /// signal N); nil if the keeper vanished first.
    public func programExit() -> Int32? {
        var kind: CInt = 0, value: CInt = 0
        while cshim_keeper_recv(socket, &kind, &value) == 1 {
            if kind == CInt(CSHIM_KEEPER_STATUS) { return ExitStatus.code(value) }
        }
        return nil
    }

    /// Lets go: the keeper kills what is left of the program's process
    /// tree; returns once it has, and has exited.
    public func release() {
        Glibc.close(socket)
        _ = ExitStatus.wait(pid: pid)
    }
}
