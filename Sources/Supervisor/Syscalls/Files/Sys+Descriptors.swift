import CShim
import Glibc
import SysKit
import Wire

/// Calls that give a descriptor a new number. A copy of a placeholder must
/// land where the filter watches data calls (0–2 or the placeholder range);
/// a copy onto a number in between becomes a stream view (`StreamPump`).
enum Descriptors {
    static let F_DUPFD_CLOEXEC: Int32 = 1030

    /// Implements dup(2).
    static func dup(_ c: borrowing Call) throws(Failure) -> Reply {
        let old = c.fd(0)
        guard try c.placeholder(fd: old) != nil else { return .continueSyscall }
        return try duplicate(c, old, closeOnExec: false, minimum: 0)
    }

    /// Implements dup2(2).
    static func dup2(_ c: borrowing Call) throws(Failure) -> Reply {
        try duplicate(c, c.fd(0), onto: c.fd(1), closeOnExec: false)
    }

    /// Implements dup3(2).
    static func dup3(_ c: borrowing Call) throws(Failure) -> Reply {
        let flags = c.int(2)
        guard flags & ~O_CLOEXEC == 0, c.fd(0) != c.fd(1) else { throw .errno(.invalidArgument) }
        return try duplicate(c, c.fd(0), onto: c.fd(1), closeOnExec: flags & O_CLOEXEC != 0)
    }

    /// fcntl(2)'s F_DUPFD and F_DUPFD_CLOEXEC (see `Locks.fcntl`).
    static func fcntlDup(_ c: borrowing Call) throws(Failure) -> Reply {
        let cmd = c.int(1), minimum = c.int(2)
        guard try c.placeholder(fd: c.fd(0)) != nil else { return .continueSyscall }
        guard minimum >= 0, minimum < c.sup.descriptorLimit else { throw .errno(.invalidArgument) }
        return try duplicate(c, c.fd(0), closeOnExec: cmd == F_DUPFD_CLOEXEC, minimum: minimum)
    }

    /// Implements pidfd_getfd(2) and recvmmsg(2) (the kernel runs them):
    /// either may put a placeholder, taken from another process or passed
    /// over a Unix socket, at the lowest free number, so the process's low
    /// descriptors are marked as possible placeholders first.
    static func mayReceivePlaceholder(_ c: borrowing Call) throws(Failure) -> Reply {
        try c.sup.tracees.markLowPlaceholders(c.thread().process)
        return .continueSyscall
    }

    /// dup/F_DUPFD of a placeholder: the same open file description at a watched number.
    private static func duplicate(_ c: borrowing Call, _ old: Int32, closeOnExec: Bool, minimum: Int32) throws(Failure) -> Reply {
        let t = try c.thread()
        let copy = try local { () throws(Errno) in try PidFD.getFD(t.pidfd, old) }
        defer { Glibc.close(copy) }
        return try c.place(copy, closeOnExec: closeOnExec, minimum: minimum)
    }

    /// dup2/dup3 onto an exact number.
    private static func duplicate(_ c: borrowing Call, _ old: Int32, onto new: Int32, closeOnExec: Bool) throws(Failure) -> Reply {
        // An error the kernel reports itself (EBADF, or dup3's EINVAL).
        if old == new || new < 0 || new >= c.sup.descriptorLimit || old < 0 { return .continueSyscall }
        if new >= c.sup.placeholderBase {
            // Onto a watched number: made here, never natively, so it cannot
            // race a placement there (the same open file either way).
            let t = try c.thread()
            let copy = try local { () throws(Errno) in try PidFD.getFD(t.pidfd, old) }
            defer { Glibc.close(copy) }
            return try c.duplicate(copy, onto: new, closeOnExec: closeOnExec)
        }
        guard let p = try c.placeholder(fd: old) else { return .continueSyscall }
        // A placeholder below the range from now on (see DescriptorRecord).
        try c.sup.tracees.markLowPlaceholders(c.thread().process)
        // 0, 1, 2: the kernel's own dup2 of the placeholder keeps them watched.
        if new <= 2 { return .continueSyscall }
        let owner = p.owner ?? p
        // The view's pump reads at the home offset.
        try c.settleReadCache(owner)
        let end: CInt
        do { end = try c.sup.watchers.makePlaceholder(handle: owner.handle, accessMode: owner.accessMode, streamOf: owner) } catch {
            throw .errno(error)
        }
        defer { Glibc.close(end) }
        let view = StreamView(inode: (try? FD.inode(end).ino) ?? 0, tgid: try c.thread().process.tgid, fd: new)
        try c.worker.withLock(owner.views) { $0.append(view) }
        owner.hasViews.store(true, ordering: .releasing)
        _ = try local { () throws(Errno) in
            try c.sup.listener.installAndRespond(id: c.id, source: end, closeOnExec: closeOnExec, at: new)
        }
        return .answered(Int64(new))
    }
}

extension Call {
    /// Runs `body` (a call that uses or moves `p`'s file offset) with the
    /// offset exact: first what the tracee wrote through stream views goes
    /// home, and what was read ahead into them but not yet read is taken
    /// back (the home offset moves back by as much).
    /// `movesOffset` (lseek, write): views that had reached end of file may
    /// have more to read afterwards, so they are renewed too.
    func withExactOffset<R>(_ p: Placeholder, movesOffset: Bool = false, _ body: () throws(Failure) -> R) throws(Failure) -> R {
        let owner = p.owner ?? p
        try settleReadCache(owner)
        guard owner.hasViews.load(ordering: .acquiring) else { return try body() }
        // The pump may hold the lock through a long call home (a FIFO read):
        // whoever could unblock that must still have its notification received.
        worker.handOffReceiving()
        return try worker.withLock(owner.views) { (views: inout [StreamView]) throws(Failure) -> R in
            views.removeAll { sup.watchers.lookup(inode: $0.inode) == nil }
            let tgid = try thread().process.tgid
            for (i, record) in views.enumerated() {
                guard let view = sup.watchers.lookup(inode: record.inode), let pump = view.stream else { continue }
                _ = pump.drainWrites(view, worker.slot)
                let unread = pump.takePending() + takeBackQueued(record)
                if unread > 0 { _ = try home(.lseek, Scalars(owner.handle, -Int64(unread), Int64(SEEK_CUR))) }
                // A view that reached end of file has told its reader so for
                // good (the socket is shut); in this process, give it a fresh one.
                if pump.endOfFile && (unread > 0 || movesOffset) && record.tgid == tgid,
                   let fresh = try? renewView(record, owner) {
                    views[i] = fresh
                }
            }
            return try body()
        }
    }

    /// Replaces the tracee's end of a stream view at its number with a new
    /// stream view of `owner` (this notification stays pending).
    private func renewView(_ record: StreamView, _ owner: Placeholder) throws -> StreamView {
        let end = try sup.watchers.makePlaceholder(handle: owner.handle, accessMode: owner.accessMode, streamOf: owner)
        defer { Glibc.close(end) }
        let fresh = StreamView(inode: try FD.inode(end).ino, tgid: record.tgid, fd: record.fd)
        try sup.listener.install(id: id, source: end, closeOnExec: false, at: record.fd)
        return fresh
    }

    /// Reads and discards what sits unread in the tracee's end of a stream
    /// view (found again by its process and number); returns the count.
    private func takeBackQueued(_ view: StreamView) -> Int {
        let pidfd = (try? PidFD.open(tid: view.tgid)) ?? -1
        guard pidfd >= 0 else { return 0 }
        defer { Glibc.close(pidfd) }
        guard let copy = try? PidFD.getFD(pidfd, view.fd) else { return 0 }
        defer { Glibc.close(copy) }
        guard let info = try? FD.inode(copy), info.ino == view.inode else { return 0 }
        var total = 0
        let buf = worker.scratch
        while true {
            let n = recv(copy, buf.baseAddress, buf.count, Int32(MSG_DONTWAIT))
            if n <= 0 { return total }
            total += n
        }
    }
}
