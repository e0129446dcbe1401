import Glibc
import SysKit

/// Every handler has this one signature.
typealias Handler = @Sendable (borrowing Call) throws(Failure) -> Reply

/// What a syscall works on, for `--stats` and `--trace` grouping.
enum SyscallClass: String, Sendable {
    /// Names a file by path.
    case path
    /// Works on an open descriptor.
    case descriptor
    /// Reads or changes the working directory.
    case cwd
    /// Changes the credentials the thread's calls act with.
    case identity
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
}

/// One row of the table: the syscall, its class, its handler and when the
/// filter sends it to the supervisor.
struct SyscallRow: Sendable {
    let nr: Int32
    let name: StaticString
    let sysClass: SyscallClass
    let handler: Handler
    let interception: Interception
    var index = 0

    init(_ nr: Int32, _ name: StaticString, _ sysClass: SyscallClass, _ handler: @escaping Handler,
         when interception: Interception = .always) {
        self.nr = nr
        self.name = name
        self.sysClass = sysClass
        self.handler = handler
        self.interception = interception
    }
}

/// The syscall table: the single list that drives the seccomp filter, the
/// dispatch and the statistics. A syscall not listed here is never
/// intercepted, by construction. `close` is watched only on the placeholder
/// numbers and always runs in the kernel, which closes placeholders itself
/// (the supervisor learns of the last close by hang-up); the supervisor only
/// looks first, to release a locking process's POSIX locks at home.
struct SyscallTable: Sendable {
    let rows: [SyscallRow]
    private let byNumber: [Int16]

    static let x86_64 = SyscallTable(rows: [
        // Opening and creating.
        SyscallRow(2, "open", .path, File.open),
        SyscallRow(257, "openat", .path, File.openat),
        SyscallRow(437, "openat2", .path, File.openat2),
        SyscallRow(85, "creat", .path, File.creat),
        // Data.
        SyscallRow(0, "read", .descriptor, ReadWrite.read, when: .placeholderRange),
        SyscallRow(1, "write", .descriptor, ReadWrite.write, when: .placeholderRange),
        SyscallRow(17, "pread64", .descriptor, ReadWrite.pread64, when: .placeholderRange),
        SyscallRow(18, "pwrite64", .descriptor, ReadWrite.pwrite64, when: .placeholderRange),
        SyscallRow(19, "readv", .descriptor, ReadWrite.readv, when: .placeholderRange),
        SyscallRow(20, "writev", .descriptor, ReadWrite.writev, when: .placeholderRange),
        SyscallRow(295, "preadv", .descriptor, ReadWrite.preadv, when: .placeholderRange),
        SyscallRow(296, "pwritev", .descriptor, ReadWrite.pwritev, when: .placeholderRange),
        SyscallRow(8, "lseek", .descriptor, ReadWrite.lseek),
        SyscallRow(74, "fsync", .descriptor, ReadWrite.fsync),
        SyscallRow(75, "fdatasync", .descriptor, ReadWrite.fdatasync),
        SyscallRow(77, "ftruncate", .descriptor, ReadWrite.ftruncate),
        // Metadata.
        SyscallRow(5, "fstat", .descriptor, Stat.fstat),
        SyscallRow(4, "stat", .path, Stat.stat),
        SyscallRow(6, "lstat", .path, Stat.lstat),
        SyscallRow(262, "newfstatat", .path, Stat.newfstatat),
        SyscallRow(332, "statx", .path, Stat.statx),
        SyscallRow(21, "access", .path, Stat.access),
        SyscallRow(269, "faccessat", .path, Stat.faccessat),
        SyscallRow(439, "faccessat2", .path, Stat.faccessat2),
        SyscallRow(89, "readlink", .path, Stat.readlink),
        SyscallRow(267, "readlinkat", .path, Stat.readlinkat),
        SyscallRow(76, "truncate", .path, File.truncate),
        // Directories and names.
        SyscallRow(217, "getdents64", .descriptor, Dir.getdents64),
        SyscallRow(83, "mkdir", .path, Dir.mkdir),
        SyscallRow(258, "mkdirat", .path, Dir.mkdirat),
        SyscallRow(84, "rmdir", .path, Dir.rmdir),
        SyscallRow(87, "unlink", .path, Dir.unlink),
        SyscallRow(263, "unlinkat", .path, Dir.unlinkat),
        SyscallRow(82, "rename", .path, Dir.rename),
        SyscallRow(264, "renameat", .path, Dir.renameat),
        SyscallRow(316, "renameat2", .path, Dir.renameat2),
        // New descriptor numbers for a placeholder: keep it in the range the filter watches.
        SyscallRow(32, "dup", .descriptor, Descriptors.dup),
        SyscallRow(33, "dup2", .descriptor, Descriptors.dup2, when: .placeholderRangeOrTarget),
        SyscallRow(292, "dup3", .descriptor, Descriptors.dup3, when: .placeholderRangeOrTarget),
        SyscallRow(72, "fcntl", .descriptor, Locks.fcntl, when: .commands(Locks.commands)),
        // Working directory.
        // Closing a descriptor releases the process's POSIX locks on its file.
        SyscallRow(3, "close", .descriptor, Locks.close, when: .placeholderRange),
        SyscallRow(80, "chdir", .cwd, Cwd.chdir),
        SyscallRow(81, "fchdir", .cwd, Cwd.fchdir),
        SyscallRow(79, "getcwd", .cwd, Cwd.getcwd),
        // Credentials: run natively, re-read before the next forwarded call.
        SyscallRow(105, "setuid", .identity, Identity.changed),
        SyscallRow(106, "setgid", .identity, Identity.changed),
        SyscallRow(113, "setreuid", .identity, Identity.changed),
        SyscallRow(114, "setregid", .identity, Identity.changed),
        SyscallRow(116, "setgroups", .identity, Identity.changed),
        SyscallRow(117, "setresuid", .identity, Identity.changed),
        SyscallRow(119, "setresgid", .identity, Identity.changed),
        SyscallRow(122, "setfsuid", .identity, Identity.changed),
        SyscallRow(123, "setfsgid", .identity, Identity.changed),
        // The umask applied to files created at home: kept per process.
        SyscallRow(95, "umask", .identity, Identity.umask),
        // Metadata, links, special files.
        SyscallRow(90, "chmod", .path, Metadata.chmod),
        SyscallRow(268, "fchmodat", .path, Metadata.fchmodat),
        SyscallRow(452, "fchmodat2", .path, Metadata.fchmodat2),
        SyscallRow(91, "fchmod", .descriptor, Metadata.fchmod),
        SyscallRow(92, "chown", .path, Metadata.chown),
        SyscallRow(94, "lchown", .path, Metadata.lchown),
        SyscallRow(260, "fchownat", .path, Metadata.fchownat),
        SyscallRow(93, "fchown", .descriptor, Metadata.fchown),
        SyscallRow(132, "utime", .path, Metadata.utime),
        SyscallRow(235, "utimes", .path, Metadata.utimes),
        SyscallRow(261, "futimesat", .path, Metadata.futimesat),
        SyscallRow(280, "utimensat", .path, Metadata.utimensat),
        SyscallRow(86, "link", .path, Metadata.link),
        SyscallRow(265, "linkat", .path, Metadata.linkat),
        SyscallRow(88, "symlink", .path, Metadata.symlink),
        SyscallRow(266, "symlinkat", .path, Metadata.symlinkat),
        SyscallRow(133, "mknod", .path, Metadata.mknod),
        SyscallRow(259, "mknodat", .path, Metadata.mknodat),
        SyscallRow(137, "statfs", .path, Metadata.statfs),
        SyscallRow(138, "fstatfs", .descriptor, Metadata.fstatfs),
        // Extended attributes.
        SyscallRow(191, "getxattr", .path, Xattr.getxattr),
        SyscallRow(192, "lgetxattr", .path, Xattr.lgetxattr),
        SyscallRow(193, "fgetxattr", .descriptor, Xattr.fgetxattr),
        SyscallRow(188, "setxattr", .path, Xattr.setxattr),
        SyscallRow(189, "lsetxattr", .path, Xattr.lsetxattr),
        SyscallRow(190, "fsetxattr", .descriptor, Xattr.fsetxattr),
        SyscallRow(194, "listxattr", .path, Xattr.listxattr),
        SyscallRow(195, "llistxattr", .path, Xattr.llistxattr),
        SyscallRow(196, "flistxattr", .descriptor, Xattr.flistxattr),
        SyscallRow(197, "removexattr", .path, Xattr.removexattr),
        SyscallRow(198, "lremovexattr", .path, Xattr.lremovexattr),
        SyscallRow(199, "fremovexattr", .descriptor, Xattr.fremovexattr),
        // Locks, space, copies, memory maps.
        SyscallRow(73, "flock", .descriptor, Locks.flock),
        SyscallRow(285, "fallocate", .descriptor, ReadWrite.fallocate),
        SyscallRow(326, "copy_file_range", .descriptor, Copy.copyFileRange),
        SyscallRow(40, "sendfile", .descriptor, Copy.sendfile),
        SyscallRow(275, "splice", .descriptor, Copy.splice),
        SyscallRow(327, "preadv2", .descriptor, ReadWrite.preadv2, when: .placeholderRange),
        SyscallRow(328, "pwritev2", .descriptor, ReadWrite.pwritev2, when: .placeholderRange),
        SyscallRow(9, "mmap", .descriptor, Memory.mmap, when: .mappedPlaceholder),
        // Descriptors passed over Unix sockets.
        SyscallRow(47, "recvmsg", .descriptor, Messages.recvmsg),
        SyscallRow(299, "recvmmsg", .descriptor, Descriptors.mayReceivePlaceholder),
        SyscallRow(438, "pidfd_getfd", .descriptor, Descriptors.mayReceivePlaceholder),
        // Sockets at home (Sys+Socket.swift); on any number, as a socket's dup may land low.
        SyscallRow(41, "socket", .descriptor, Sockets.socket),
        SyscallRow(42, "connect", .descriptor, Sockets.connect),
        SyscallRow(55, "getsockopt", .descriptor, Sockets.getsockopt),
        SyscallRow(54, "setsockopt", .descriptor, Sockets.setsockopt),
        SyscallRow(51, "getsockname", .descriptor, Sockets.getsockname),
        SyscallRow(52, "getpeername", .descriptor, Sockets.getpeername),
        SyscallRow(49, "bind", .descriptor, Sockets.bind),
        SyscallRow(50, "listen", .descriptor, Sockets.listen),
        SyscallRow(43, "accept", .descriptor, Sockets.accept),
        SyscallRow(288, "accept4", .descriptor, Sockets.accept4),
        // A datagram socket's placeholder lives in the watched range (Sys+Datagram.swift).
        SyscallRow(44, "sendto", .descriptor, Datagrams.sendto, when: .placeholderRange),
        SyscallRow(45, "recvfrom", .descriptor, Datagrams.recvfrom, when: .placeholderRange),
        SyscallRow(46, "sendmsg", .descriptor, Datagrams.sendmsg, when: .placeholderRange),
        SyscallRow(307, "sendmmsg", .descriptor, Datagrams.sendmmsg, when: .placeholderRange),
        // Refused on forwarded names, with the errno a program already handles.
        SyscallRow(254, "inotify_add_watch", .path, Unsupported.path(1)),
        SyscallRow(303, "name_to_handle_at", .path, Unsupported.path(1, dirfd: 0)),
        // io_uring runs file operations the filter never sees: not offered at all.
        SyscallRow(425, "io_uring_setup", .descriptor, Unsupported.always(.noFunction)),
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
            }
        }
    }
}
