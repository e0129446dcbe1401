import Glibc
import SysKit

/// Every handler has this one signature.
typealias Handler = @Sendable (borrowing Call) throws(Failure) -> Reply

/// strace's syscall classes (`-e trace=%file` and so on), for `--trace`
/// filtering: a syscall is in every class whose strace flag it has
/// (`file`: names a file; `desc`: takes or returns a descriptor).
struct TraceClass: OptionSet, Sendable {
    let rawValue: UInt32
    static let file = TraceClass(rawValue: 1 << 0)
    static let desc = TraceClass(rawValue: 1 << 1)
    static let network = TraceClass(rawValue: 1 << 2)
    static let process = TraceClass(rawValue: 1 << 3)
    static let signal = TraceClass(rawValue: 1 << 4)
    static let ipc = TraceClass(rawValue: 1 << 5)
    static let memory = TraceClass(rawValue: 1 << 6)
    static let creds = TraceClass(rawValue: 1 << 7)
    static let stat = TraceClass(rawValue: 1 << 8)
    static let lstat = TraceClass(rawValue: 1 << 9)
    static let fstat = TraceClass(rawValue: 1 << 10)
    /// strace's `%%stat`: every call of the stat family.
    static let anyStat = TraceClass(rawValue: 1 << 11)
    static let statfs = TraceClass(rawValue: 1 << 12)
    static let fstatfs = TraceClass(rawValue: 1 << 13)
    /// strace's `%%statfs`.
    static let anyStatfs = TraceClass(rawValue: 1 << 14)

    /// The class names `--trace=` takes, as strace spells them after its `%`.
    static let names: [(String, TraceClass)] = [
        ("file", .file), ("desc", .desc), ("network", .network), ("net", .network), ("process", .process),
        ("signal", .signal), ("ipc", .ipc), ("memory", .memory), ("creds", .creds), ("stat", .stat),
        ("lstat", .lstat), ("fstat", .fstat), ("%stat", .anyStat), ("statfs", .statfs), ("fstatfs", .fstatfs),
        ("%statfs", .anyStatfs),
    ]
}

/// Which calls of a syscall the filter sends to the supervisor.
enum Interception: Sendable {
    /// Every call.
    case always
    /// Hot data calls: only on descriptors 0, 1, 2 (shell redirections)
    /// and the placeholder range; the tracee's own descriptors in between
    /// run at native speed.
    case placeholderRange
    /// Only these commands (arg1), e.g. fcntl's F_DUPFD.
    case commands([Int32])
    /// mmap of a descriptor in the watched numbers.
    case mappedPlaceholder
    /// dup2/dup3: as `placeholderRange`, or onto a number in the
    /// placeholder range, which the supervisor then makes itself.
    case placeholderRangeOrTarget
    /// ioctl requests (arg1) of these types (`_IOC_TYPE`, bits 8–15).
    case requestTypes([UInt8])
}

/// One row of the table: the syscall, its strace classes, how `--trace`
/// shows its arguments and result (`TraceFormat`), its handler and when the
/// filter sends it to the supervisor.
struct SyscallRow: Sendable {
    let nr: Int32
    let name: StaticString
    let classes: TraceClass
    /// One letter per argument, then optionally `:` and the result's letter
    /// (see `TraceFormat.Argument`): "Dpom:f" is openat's dirfd, path,
    /// open flags and mode, returning a descriptor.
    let signature: StaticString
    let handler: Handler
    let interception: Interception
    var index = 0

    init(_ nr: Int32, _ name: StaticString, _ classes: TraceClass, _ signature: StaticString, _ handler: @escaping Handler,
         when interception: Interception = .always) {
        self.nr = nr
        self.name = name
        self.classes = classes
        self.signature = signature
        self.handler = handler
        self.interception = interception
    }
}

/// The syscall table: the single list that drives the seccomp filter, the
/// dispatch, `--trace` and the statistics. A syscall not listed here is never
/// intercepted, by construction. `close` is watched only on the placeholder
/// numbers and always runs in the kernel, which closes placeholders itself
/// (the supervisor learns of the last close by hang-up); the supervisor only
/// looks first, to release a locking process's POSIX locks at home.
struct SyscallTable: Sendable {
    let rows: [SyscallRow]
    private let byNumber: [Int16]

    static let x86_64 = SyscallTable(rows: [
        // Opening and creating.
        SyscallRow(2, "open", [.file, .desc], "pom:f", File.open),
        SyscallRow(257, "openat", [.file, .desc], "Dpom:f", File.openat),
        SyscallRow(437, "openat2", [.file, .desc], "Dphz:f", File.openat2),
        SyscallRow(85, "creat", [.file, .desc], "pm:f", File.creat),
        // Data.
        SyscallRow(0, "read", .desc, "fxz:b", ReadWrite.read, when: .placeholderRange),
        SyscallRow(1, "write", .desc, "fxz:b", ReadWrite.write, when: .placeholderRange),
        SyscallRow(17, "pread64", .desc, "fxzl:b", ReadWrite.pread64, when: .placeholderRange),
        SyscallRow(18, "pwrite64", .desc, "fxzl:b", ReadWrite.pwrite64, when: .placeholderRange),
        SyscallRow(19, "readv", .desc, "fxi:b", ReadWrite.readv, when: .placeholderRange),
        SyscallRow(20, "writev", .desc, "fxi:b", ReadWrite.writev, when: .placeholderRange),
        SyscallRow(295, "preadv", .desc, "fxil:b", ReadWrite.preadv, when: .placeholderRange),
        SyscallRow(296, "pwritev", .desc, "fxil:b", ReadWrite.pwritev, when: .placeholderRange),
        SyscallRow(8, "lseek", .desc, "flw", ReadWrite.lseek),
        SyscallRow(74, "fsync", .desc, "f", ReadWrite.fsync),
        SyscallRow(75, "fdatasync", .desc, "f", ReadWrite.fdatasync),
        SyscallRow(77, "ftruncate", .desc, "fl", ReadWrite.ftruncate),
        // Metadata.
        SyscallRow(5, "fstat", [.desc, .fstat, .anyStat], "fx", Stat.fstat),
        SyscallRow(4, "stat", [.file, .stat, .anyStat], "px", Stat.stat),
        SyscallRow(6, "lstat", [.file, .lstat, .anyStat], "px", Stat.lstat),
        SyscallRow(262, "newfstatat", [.file, .desc, .fstat, .anyStat], "Dpxa", Stat.newfstatat),
        SyscallRow(332, "statx", [.file, .desc, .fstat, .anyStat], "DpaXx", Stat.statx),
        SyscallRow(21, "access", .file, "pA", Stat.access),
        SyscallRow(269, "faccessat", [.file, .desc], "DpA", Stat.faccessat),
        SyscallRow(439, "faccessat2", [.file, .desc], "DpAa", Stat.faccessat2),
        SyscallRow(89, "readlink", .file, "pxz:b", Stat.readlink),
        SyscallRow(267, "readlinkat", [.file, .desc], "Dpxz:b", Stat.readlinkat),
        SyscallRow(76, "truncate", .file, "pl", File.truncate),
        // Directories and names.
        SyscallRow(217, "getdents64", .desc, "fxz:b", Dir.getdents64),
        SyscallRow(83, "mkdir", .file, "pm", Dir.mkdir),
        SyscallRow(258, "mkdirat", [.file, .desc], "Dpm", Dir.mkdirat),
        SyscallRow(84, "rmdir", .file, "p", Dir.rmdir),
        SyscallRow(87, "unlink", .file, "p", Dir.unlink),
        SyscallRow(263, "unlinkat", [.file, .desc], "Dpu", Dir.unlinkat),
        SyscallRow(82, "rename", .file, "pp", Dir.rename),
        SyscallRow(264, "renameat", [.file, .desc], "DpDp", Dir.renameat),
        SyscallRow(316, "renameat2", [.file, .desc], "DpDpr", Dir.renameat2),
        // New descriptor numbers for a placeholder: keep it in the range the filter watches.
        SyscallRow(32, "dup", .desc, "f:f", Descriptors.dup),
        SyscallRow(33, "dup2", .desc, "ff:f", Descriptors.dup2, when: .placeholderRangeOrTarget),
        SyscallRow(292, "dup3", .desc, "ffo:f", Descriptors.dup3, when: .placeholderRangeOrTarget),
        SyscallRow(72, "fcntl", .desc, "fcg", Locks.fcntl, when: .commands(Locks.commands)),
        // Working directory.
        // Closing a descriptor releases the process's POSIX locks on its file.
        SyscallRow(3, "close", .desc, "f", Locks.close, when: .placeholderRange),
        SyscallRow(80, "chdir", .file, "p", Cwd.chdir),
        SyscallRow(81, "fchdir", .desc, "f", Cwd.fchdir),
        SyscallRow(79, "getcwd", .file, "xz", Cwd.getcwd),
        // Programs: the policy decides on the path; a program at home runs as a copy.
        SyscallRow(59, "execve", [.file, .process], "pxx", Exec.execve),
        SyscallRow(322, "execveat", [.file, .process], "Dpxxa", Exec.execveat),
        // Credentials: run natively, re-read before the next forwarded call.
        SyscallRow(105, "setuid", .creds, "i", Identity.changed),
        SyscallRow(106, "setgid", .creds, "i", Identity.changed),
        SyscallRow(113, "setreuid", .creds, "ii", Identity.changed),
        SyscallRow(114, "setregid", .creds, "ii", Identity.changed),
        SyscallRow(116, "setgroups", .creds, "ix", Identity.changed),
        SyscallRow(117, "setresuid", .creds, "iii", Identity.changed),
        SyscallRow(119, "setresgid", .creds, "iii", Identity.changed),
        SyscallRow(122, "setfsuid", .creds, "i", Identity.changed),
        SyscallRow(123, "setfsgid", .creds, "i", Identity.changed),
        // The umask applied to files created at home: kept per process.
        SyscallRow(95, "umask", [], "m:o", Identity.umask),
        // Metadata, links, special files.
        SyscallRow(90, "chmod", .file, "pm", Metadata.chmod),
        SyscallRow(268, "fchmodat", [.file, .desc], "Dpm", Metadata.fchmodat),
        SyscallRow(452, "fchmodat2", [.file, .desc], "Dpma", Metadata.fchmodat2),
        SyscallRow(91, "fchmod", .desc, "fm", Metadata.fchmod),
        SyscallRow(92, "chown", .file, "pii", Metadata.chown),
        SyscallRow(94, "lchown", .file, "pii", Metadata.lchown),
        SyscallRow(260, "fchownat", [.file, .desc], "Dpiia", Metadata.fchownat),
        SyscallRow(93, "fchown", .desc, "fii", Metadata.fchown),
        SyscallRow(132, "utime", .file, "px", Metadata.utime),
        SyscallRow(235, "utimes", .file, "px", Metadata.utimes),
        SyscallRow(261, "futimesat", [.file, .desc], "Dpx", Metadata.futimesat),
        SyscallRow(280, "utimensat", [.file, .desc], "Dpxa", Metadata.utimensat),
        SyscallRow(86, "link", .file, "pp", Metadata.link),
        SyscallRow(265, "linkat", [.file, .desc], "DpDpa", Metadata.linkat),
        SyscallRow(88, "symlink", .file, "pp", Metadata.symlink),
        SyscallRow(266, "symlinkat", [.file, .desc], "pDp", Metadata.symlinkat),
        SyscallRow(133, "mknod", .file, "pmX", Metadata.mknod),
        SyscallRow(259, "mknodat", [.file, .desc], "DpmX", Metadata.mknodat),
        SyscallRow(137, "statfs", [.file, .statfs, .anyStatfs], "px", Metadata.statfs),
        SyscallRow(138, "fstatfs", [.desc, .fstatfs, .anyStatfs], "fx", Metadata.fstatfs),
        // Extended attributes.
        SyscallRow(191, "getxattr", .file, "psxz:b", Xattr.getxattr),
        SyscallRow(192, "lgetxattr", .file, "psxz:b", Xattr.lgetxattr),
        SyscallRow(193, "fgetxattr", .desc, "fsxz:b", Xattr.fgetxattr),
        SyscallRow(188, "setxattr", .file, "psxzX", Xattr.setxattr),
        SyscallRow(189, "lsetxattr", .file, "psxzX", Xattr.lsetxattr),
        SyscallRow(190, "fsetxattr", .desc, "fsxzX", Xattr.fsetxattr),
        SyscallRow(194, "listxattr", .file, "pxz:b", Xattr.listxattr),
        SyscallRow(195, "llistxattr", .file, "pxz:b", Xattr.llistxattr),
        SyscallRow(196, "flistxattr", .desc, "fxz:b", Xattr.flistxattr),
        SyscallRow(197, "removexattr", .file, "ps", Xattr.removexattr),
        SyscallRow(198, "lremovexattr", .file, "ps", Xattr.lremovexattr),
        SyscallRow(199, "fremovexattr", .desc, "fs", Xattr.fremovexattr),
        // Locks, space, copies, memory maps.
        SyscallRow(73, "flock", .desc, "fk", Locks.flock),
        SyscallRow(285, "fallocate", .desc, "fXll", ReadWrite.fallocate),
        SyscallRow(326, "copy_file_range", .desc, "fxfxzX:b", Copy.copyFileRange),
        SyscallRow(40, "sendfile", [.desc, .network], "ffxz:b", Copy.sendfile),
        SyscallRow(275, "splice", .desc, "fxfxzX:b", Copy.splice),
        SyscallRow(327, "preadv2", .desc, "fxilX:b", ReadWrite.preadv2, when: .placeholderRange),
        SyscallRow(328, "pwritev2", .desc, "fxilX:b", ReadWrite.pwritev2, when: .placeholderRange),
        SyscallRow(9, "mmap", [.desc, .memory], "xzPMfl:x", Memory.mmap, when: .mappedPlaceholder),
        // Descriptors passed over Unix sockets.
        SyscallRow(47, "recvmsg", .network, "fxX:b", Messages.recvmsg),
        SyscallRow(299, "recvmmsg", .network, "fxiXx", Messages.recvmmsg),
        SyscallRow(438, "pidfd_getfd", .desc, "ffX:f", Descriptors.mayReceivePlaceholder),
        // Sockets at home (Sys+Socket.swift); on any number, as a socket's dup may land low.
        SyscallRow(41, "socket", [.desc, .network], "iXi:f", Sockets.socket),
        SyscallRow(42, "connect", .network, "fxi", Sockets.connect),
        SyscallRow(55, "getsockopt", .network, "fiixx", Sockets.getsockopt),
        SyscallRow(54, "setsockopt", .network, "fiixi", Sockets.setsockopt),
        SyscallRow(51, "getsockname", .network, "fxx", Sockets.getsockname),
        SyscallRow(52, "getpeername", .network, "fxx", Sockets.getpeername),
        SyscallRow(49, "bind", .network, "fxi", Sockets.bind),
        SyscallRow(50, "listen", .network, "fi", Sockets.listen),
        SyscallRow(43, "accept", [.desc, .network], "fxx:f", Sockets.accept),
        SyscallRow(288, "accept4", [.desc, .network], "fxxX:f", Sockets.accept4),
        // A datagram socket's placeholder lives in the watched range (Sys+Datagram.swift, Sys+DatagramSend.swift).
        SyscallRow(44, "sendto", .network, "fxzXxi:b", Datagrams.sendto, when: .placeholderRange),
        SyscallRow(45, "recvfrom", .network, "fxzXxx:b", Datagrams.recvfrom, when: .placeholderRange),
        SyscallRow(46, "sendmsg", .network, "fxX:b", Datagrams.sendmsg, when: .placeholderRange),
        SyscallRow(307, "sendmmsg", .network, "fxiX", Datagrams.sendmmsg, when: .placeholderRange),
        SyscallRow(48, "shutdown", .network, "fi", Datagrams.shutdown, when: .placeholderRange),
        // Terminals and devices at home (Sys+Ioctl.swift): terminal- and socket-type requests.
        SyscallRow(16, "ioctl", .desc, "fXx", Devices.ioctl, when: .requestTypes(Devices.interceptedTypes)),
        // Refused on forwarded names, with the errno a program already handles.
        SyscallRow(254, "inotify_add_watch", [.file, .desc], "fpX", Unsupported.path(1)),
        SyscallRow(303, "name_to_handle_at", [.file, .desc], "Dpxxa", Unsupported.path(1, dirfd: 0)),
        // io_uring runs file operations the filter never sees: not offered at all.
        SyscallRow(425, "io_uring_setup", .desc, "ix:f", Unsupported.always(.noFunction)),
    ])

    init(rows: [SyscallRow]) {
        var indexed = rows
        var byNumber = [Int16](repeating: -1, count: 512)
        for i in indexed.indices {
            indexed[i].index = i
            precondition(byNumber[Int(indexed[i].nr)] == -1, "syscall \(indexed[i].name) listed twice")
            byNumber[Int(indexed[i].nr)] = Int16(i)
        }
        self.rows = indexed
        self.byNumber = byNumber
    }

    @inline(__always)
    func row(for nr: Int32) -> SyscallRow? {
        guard nr >= 0, Int(nr) < byNumber.count else { return nil }
        let i = byNumber[Int(nr)]
        return i < 0 ? nil : rows[Int(i)]
    }

    /// The filter's rules, with the placeholder range starting at `placeholderBase`.
    func filterRules(placeholderBase: Int32) -> [(nr: Int32, when: NotifyWhen)] {
        rows.map { row in
            switch row.interception {
            case .always: return (row.nr, .always)
            case .placeholderRange: return (row.nr, .descriptorRange(base: placeholderBase))
            case .commands(let c): return (row.nr, .arg1In(c))
            case .mappedPlaceholder: return (row.nr, .mappedDescriptorRange(base: placeholderBase))
            case .placeholderRangeOrTarget: return (row.nr, .descriptorOrTargetRange(base: placeholderBase))
            case .requestTypes(let t): return (row.nr, .arg1TypeIn(t))
            }
        }
    }
}
