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
/// intercepted, by construction. `close` is deliberately absent: the kernel
/// closes placeholders itself and the supervisor learns of the last close
/// by hang-up.
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
        SyscallRow(33, "dup2", .descriptor, Descriptors.dup2),
        SyscallRow(292, "dup3", .descriptor, Descriptors.dup3),
        SyscallRow(72, "fcntl", .descriptor, Descriptors.fcntl, when: .commands([F_DUPFD, 1030 /* F_DUPFD_CLOEXEC */])),
        // Working directory.
        SyscallRow(80, "chdir", .cwd, Cwd.chdir),
        SyscallRow(81, "fchdir", .cwd, Cwd.fchdir),
        SyscallRow(79, "getcwd", .cwd, Cwd.getcwd),
        // Not forwarded yet: refused (EOPNOTSUPP) on forwarded names and
        // descriptors so the target's file of that name is never touched.
        SyscallRow(90, "chmod", .path, Unsupported.path(0)),
        SyscallRow(268, "fchmodat", .path, Unsupported.path(1, dirfd: 0)),
        SyscallRow(91, "fchmod", .descriptor, Unsupported.descriptor(0)),
        SyscallRow(92, "chown", .path, Unsupported.path(0)),
        SyscallRow(94, "lchown", .path, Unsupported.path(0)),
        SyscallRow(260, "fchownat", .path, Unsupported.path(1, dirfd: 0)),
        SyscallRow(93, "fchown", .descriptor, Unsupported.descriptor(0)),
        SyscallRow(132, "utime", .path, Unsupported.path(0)),
        SyscallRow(235, "utimes", .path, Unsupported.path(0)),
        SyscallRow(261, "futimesat", .path, Unsupported.pathOrDescriptor(1, dirfd: 0)),
        SyscallRow(280, "utimensat", .path, Unsupported.pathOrDescriptor(1, dirfd: 0)),
        SyscallRow(86, "link", .path, Unsupported.twoPaths(0, dirfd: nil, 1, dirfd: nil)),
        SyscallRow(265, "linkat", .path, Unsupported.twoPaths(1, dirfd: 0, 3, dirfd: 2)),
        SyscallRow(88, "symlink", .path, Unsupported.path(1)),
        SyscallRow(266, "symlinkat", .path, Unsupported.path(2, dirfd: 1)),
        SyscallRow(133, "mknod", .path, Unsupported.path(0)),
        SyscallRow(259, "mknodat", .path, Unsupported.path(1, dirfd: 0)),
        SyscallRow(137, "statfs", .path, Unsupported.path(0)),
        SyscallRow(138, "fstatfs", .descriptor, Unsupported.descriptor(0)),
        SyscallRow(188, "setxattr", .path, Unsupported.path(0)),
        SyscallRow(189, "lsetxattr", .path, Unsupported.path(0)),
        SyscallRow(190, "fsetxattr", .descriptor, Unsupported.descriptor(0)),
        SyscallRow(191, "getxattr", .path, Unsupported.path(0)),
        SyscallRow(192, "lgetxattr", .path, Unsupported.path(0)),
        SyscallRow(193, "fgetxattr", .descriptor, Unsupported.descriptor(0)),
        SyscallRow(194, "listxattr", .path, Unsupported.path(0)),
        SyscallRow(195, "llistxattr", .path, Unsupported.path(0)),
        SyscallRow(196, "flistxattr", .descriptor, Unsupported.descriptor(0)),
        SyscallRow(197, "removexattr", .path, Unsupported.path(0)),
        SyscallRow(198, "lremovexattr", .path, Unsupported.path(0)),
        SyscallRow(199, "fremovexattr", .descriptor, Unsupported.descriptor(0)),
        SyscallRow(254, "inotify_add_watch", .path, Unsupported.path(1)),
        // ENOLCK, as NFS says when it cannot lock: a lock on the placeholder
        // would exclude nobody at home.
        SyscallRow(73, "flock", .descriptor, Unsupported.descriptor(0, errno: .noLocks)),
        SyscallRow(285, "fallocate", .descriptor, Unsupported.descriptor(0)),
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
            }
        }
    }
}
