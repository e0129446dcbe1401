import Glibc
import Synchronization
import SysKit

/// A session's open handles: the descriptors the client may name, each
/// with what kind of object it is (a call on a stream may block, so it runs
/// on a thread of its own).
///
/// Calls run concurrently, so a handle is *acquired* for the length of each
/// call that uses it, and `close` only unlists it: the descriptor itself is
/// closed when its last call returns. Until then the kernel cannot hand the
/// same number to a new open, so a call blocked on a handle that the client
/// has meanwhile released never ends up reading another file.
final class Handles: Sendable {
    /// What a handle refers to.
    enum Kind: Sendable {
        /// A regular file, directory, symlink or block device: calls on it
        /// finish without waiting for anyone, so they may run inline.
        case file
        /// A FIFO, socket or character device: reads and writes may wait.
        case stream
    }

    struct Entry {
        var fd: CInt
        var kind: Kind
        /// Calls using it right now.
        var users: Int32
        /// Unlisted by `close`; the descriptor closes with its last user.
        var closing: Bool
    }

    private let table = Mutex<[CInt: Entry]>([:])
    /// Most handles open at once (closing ones included: they still hold a
    /// descriptor); one more open is EMFILE.
    let limit: Int

    init(limit: Int = SessionLimits.defaultMaxOpen) {
        self.limit = limit
    }

    /// The kind of an open descriptor (one fstat).
    static func kind(of fd: CInt) -> Kind {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .file }
        switch st.st_mode & S_IFMT {
        case S_IFIFO, S_IFSOCK, S_IFCHR: return .stream
        default: return .file
        }
    }

    /// Lists a descriptor the session just opened; with `limit` handles
    /// open already, closes it and fails with EMFILE.
    func insert(_ fd: CInt, kind: Kind) throws(Errno) {
        let ok = table.withLock { t -> Bool in
            guard t.count < limit else { return false }
            t[fd] = Entry(fd: fd, kind: kind, users: 0, closing: false)
            return true
        }
        if !ok {
            Glibc.close(fd)
            throw Errno.tooManyOpenFiles
        }
    }

    /// The kind of `handle` without acquiring it (for placement), or nil if
    /// the session has no such handle.
    func kind(_ handle: Int64) -> Kind? {
        guard let fd = CInt(exactly: handle) else { return nil }
        return table.withLock { t in t[fd].flatMap { $0.closing ? nil : $0.kind } }
    }

    /// Acquires `handle` for one call: EBADF unless the session has it open.
    func acquire(_ handle: Int64) throws(Errno) -> CInt {
        guard let fd = CInt(exactly: handle), fd >= 0 else { throw Errno.badFileDescriptor }
        let ok = table.withLock { t -> Bool in
            guard var e = t[fd], !e.closing else { return false }
            e.users += 1
            t[fd] = e
            return true
        }
        guard ok else { throw Errno.badFileDescriptor }
        return fd
    }

    /// Ends one call's use of `fd`; closes it if it was unlisted meanwhile.
    func release(_ fd: CInt) {
        if mustClose(afterReleasing: fd) { Glibc.close(fd) }
    }

    /// Ends one call's use of `fd`; true if it was unlisted meanwhile and
    /// the caller must now close it (from the session's descriptor table).
    func mustClose(afterReleasing fd: CInt) -> Bool {
        table.withLock { t -> Bool in
            guard var e = t[fd] else { return false }
            e.users -= 1
            if e.closing && e.users == 0 {
                t.removeValue(forKey: fd)
                return true
            }
            t[fd] = e
            return false
        }
    }

    /// Unlists `handle` (EBADF if the session has no such handle); the
    /// descriptor closes now or with the last call still using it.
    func close(_ handle: Int64) throws(Errno) {
        guard let fd = CInt(exactly: handle), fd >= 0 else { throw Errno.badFileDescriptor }
        let outcome = table.withLock { t -> Int in
            guard var e = t[fd], !e.closing else { return -1 }
            if e.users == 0 {
                t.removeValue(forKey: fd)
                return 1
            }
            e.closing = true
            t[fd] = e
            return 0
        }
        if outcome < 0 { throw Errno.badFileDescriptor }
        if outcome == 1 { Glibc.close(fd) }
    }

    /// Closes every handle nobody is using (the session is over); returns
    /// how many are still in use.
    @discardableResult
    func closeAll() -> Int {
        let (idle, busy) = table.withLock { t -> ([CInt], Int) in
            var idle: [CInt] = [], busy = 0
            for (fd, e) in t {
                if e.users == 0 { idle.append(fd) } else { busy += 1 }
            }
            for fd in idle { t.removeValue(forKey: fd) }
            for fd in t.keys { t[fd]!.closing = true }
            return (idle, busy)
        }
        for fd in idle { Glibc.close(fd) }
        return busy
    }
}
