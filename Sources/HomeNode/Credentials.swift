import CShim
import Glibc
import Synchronization
import SysKit
import Wire

/// The file credentials a request acts with at home: a tracee thread's
/// fsuid, fsgid and supplementary groups, as its `credentials` frame gave
/// them. Immutable; shared by every call of the channel until the next frame.
final class HomeCredentials: Sendable {
    let uid: UInt32
    let gid: UInt32
    let groups: [UInt32]

    init(uid: UInt32, gid: UInt32, groups: [UInt32]) {
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }

    /// The calling thread's own (the deputy's) credentials.
    static func own() -> HomeCredentials {
        let n = getgroups(0, nil)
        var groups = [gid_t](repeating: 0, count: Int(max(n, 0)))
        let got = groups.isEmpty ? 0 : getgroups(Int32(groups.count), &groups)
        return HomeCredentials(uid: geteuid(), gid: getegid(), groups: Array(groups.prefix(Int(max(got, 0)))))
    }

    /// Whether `other` names the same uid, gid and groups (then switching
    /// between the two is a no-op: channels of one tracee thread, or of
    /// threads with the same identity, each hold their own object).
    func sameIdentity(as other: HomeCredentials) -> Bool {
        uid == other.uid && gid == other.gid && groups == other.groups
    }

    /// Makes the calling thread act on files with these credentials.
    func adopt() throws(Errno) {
        try groups.withUnsafeBufferPointer { (g) throws(Errno) in
            try sys { cshim_adopt_credentials(uid, gid, g.baseAddress, g.count) }
        }
    }
}

/// A session's credentials by channel (the low 16 bits of a request id:
/// the client's sender of that request), and whether the deputy can adopt
/// them at all. An unprivileged deputy acts as itself.
final class SessionCredentials: Sendable {
    /// The deputy can switch its threads' file credentials (it runs as root).
    let privileged: Bool
    /// The deputy's own: what a channel without a `credentials` frame acts with.
    let own: HomeCredentials
    private let channels = Mutex<[UInt16: HomeCredentials]>([:])

    init() {
        privileged = geteuid() == 0
        own = HomeCredentials.own()
    }

    /// Credentials for the requests of `channel` from now on.
    func set(channel: UInt16, _ credentials: HomeCredentials) {
        channels.withLock { $0[channel] = credentials }
    }

    /// What a request with this id acts with (nil: nothing to adopt).
    func forRequest(_ id: UInt64) -> HomeCredentials? {
        guard privileged else { return nil }
        return channels.withLock { $0[UInt16(truncatingIfNeeded: id)] } ?? own
    }
}

/// A thread's current file credentials, kept by the thread that runs
/// calls, so that it switches only when a call needs other credentials.
struct AppliedCredentials {
    private(set) var current: HomeCredentials?

    init() {}

    /// Switches the calling thread to `wanted` unless it already acts so
    /// (the same object, or the same uid, gid and groups: no syscall).
    mutating func apply(_ wanted: HomeCredentials?) throws(Errno) {
        guard let wanted, wanted !== current else { return }
        if let current, current.sameIdentity(as: wanted) {
            self.current = wanted
            return
        }
        do {
            try wanted.adopt()
            current = wanted
        } catch {
            current = nil   // unknown state: switch again next time
            throw error
        }
    }
}
