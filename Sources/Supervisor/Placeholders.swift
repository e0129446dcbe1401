import CShim
import Glibc
import Synchronization
import SysKit

/// A forwarded open file description as the tracee sees it: one end of a
/// socketpair installed in the tracee (so dup, dup2, fork, SCM_RIGHTS,
/// CLOEXEC and close are the kernel's own), identified by that end's inode.
/// The supervisor keeps the other end; when it hangs up, the tracee's last
/// reference is gone and the home handle is closed.
final class Placeholder: Sendable {
    /// The deputy's handle of the open file.
    let handle: Int64
    /// Inode of the tracee's end: the key the tracee's fd maps back to.
    let inode: UInt64
    /// Our end of the pair, watched for hang-up.
    let supervisorEnd: CInt
    let link: HomeLink

    init(handle: Int64, inode: UInt64, supervisorEnd: CInt, link: HomeLink) {
        self.handle = handle
        self.inode = inode
        self.supervisorEnd = supervisorEnd
        self.link = link
    }

    deinit {
        Glibc.close(supervisorEnd)
        link.release(handle: handle)
    }
}

/// A working directory at home: a deputy handle and the path it had, inside
/// the export root, when the tracee moved there. Shared by processes that
/// inherited it; closed at home when the last one leaves it.
final class RemoteDir: Sendable {
    let handle: Int64
    let path: [UInt8]
    let link: HomeLink

    init(handle: Int64, path: [UInt8], link: HomeLink) {
        self.handle = handle
        self.path = path
        self.link = link
    }

    deinit { link.release(handle: handle) }
}

/// Placeholders by inode, and the epoll set that watches for their hang-up
/// and for tracee threads' exit.
final class Watchers: Sendable {
    let epoll: CInt
    let placeholders = Mutex<[UInt64: Placeholder]>([:])

    /// epoll data tag for a thread's pidfd (the rest is the tid).
    static let threadTag: UInt64 = 1 << 63

    init() throws(Errno) {
        epoll = try sys { cshim_epoll_create() }
    }

    func lookup(inode: UInt64) -> Placeholder? {
        placeholders.withLock { $0[inode] }
    }

    /// Makes a socketpair for a new placeholder of `handle`; returns the
    /// tracee's end (to install, then close) and registers the other.
    func makePlaceholder(handle: Int64, link: HomeLink) throws(Errno) -> CInt {
        let (traceeEnd, ours) = try FD.socketPair()
        do {
            let (ino, _) = try FD.inode(traceeEnd)
            let p = Placeholder(handle: handle, inode: ino, supervisorEnd: ours, link: link)
            placeholders.withLock { $0[ino] = p }
            try sys { cshim_epoll_add(epoll, ours, CSHIM_EPOLLRDHUP | CSHIM_EPOLLHUP, ino) }
            return traceeEnd
        } catch {
            Glibc.close(traceeEnd)
            throw error
        }
    }

    func watchThread(tid: pid_t, pidfd: CInt) {
        _ = cshim_epoll_add(epoll, pidfd, CSHIM_EPOLLIN, Self.threadTag | UInt64(UInt32(bitPattern: tid)))
    }

    /// Runs forever on its own thread: releases placeholders whose tracee
    /// ends are all closed, and forgets threads that exited.
    func run(onThreadExit: @Sendable (pid_t) -> Void) {
        var tags = [UInt64](repeating: 0, count: 64)
        var events = [UInt32](repeating: 0, count: 64)
        while true {
            let n = cshim_epoll_wait(epoll, &tags, &events, 64, -1)
            if n < 0 { if Glibc.errno == EINTR { continue } else { return } }
            for i in 0..<Int(n) {
                let data = tags[i]
                if data & Self.threadTag != 0 {
                    onThreadExit(pid_t(bitPattern: UInt32(truncatingIfNeeded: data)))
                } else {
                    let p = placeholders.withLock { $0.removeValue(forKey: data) }
                    if let p { _ = cshim_epoll_del(epoll, p.supervisorEnd) }
                }
            }
        }
    }
}
