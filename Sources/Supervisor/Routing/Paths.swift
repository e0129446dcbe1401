import CShim
import Glibc
import Policy
import SysKit
import Wire

/// Where a path argument goes, decided by the binding policy on its
/// normalized absolute form.
enum PathRoute {
    /// The target's own file: let the kernel run the call.
    case local
    /// Executed at home, relative to `dir` (a handle or `Wire.rootDir`).
    /// `keep` holds the directory's owner alive until the call is done.
    case forward(dir: Int64, keep: AnyObject?)
    /// The target's own file, but the kernel cannot find it from the name
    /// given: a relative path whose process works in a directory at home
    /// (`../../usr/lib` from there). The path has been rewritten to its
    /// absolute form and the supervisor's local deputy executes the call.
    case emulated

    /// Where a call that is not simply continued goes.
    var destination: Destination? {
        switch self {
        case .local: return nil
        case .forward(let dir, let keep): return Destination(dir: dir, keep: keep, isLocal: false)
        case .emulated: return Destination(dir: Wire.rootDir, keep: nil, isLocal: true)
        }
    }
}

/// The executor of a routed call: the home node, or the target's own
/// files through the supervisor's local deputy.
struct Destination {
    let dir: Int64
    let keep: AnyObject?
    let isLocal: Bool

    /// For calls naming two paths (rename, link): both must be on the same
    /// side, or the answer is EXDEV (which `mv` answers by copying). Nil:
    /// both local and kernel-resolvable, so the call continues. A local
    /// path next to an emulated one is absolute (relative ones from that
    /// process are emulated too), so the local deputy takes both.
    static func pair(_ a: PathRoute, _ b: PathRoute) throws(Failure) -> (Destination, Destination)? {
        switch (a, b) {
        case (.local, .local):
            return nil
        case (.forward, .forward):
            return (a.destination!, b.destination!)
        case (.emulated, .emulated), (.emulated, .local), (.local, .emulated):
            let here = Destination(dir: Wire.rootDir, keep: nil, isLocal: true)
            return (here, here)
        default:
            throw .errno(.improperLink)
        }
    }
}

extension Call {
    /// Reads the path argument `arg` into `buf` (NUL included) and routes it
    /// against `dirfd` (AT_FDCWD for the working directory). May rewrite the
    /// path in `buf` to its absolute form when a relative path leaves a
    /// local working directory for a forwarded one. Returns the route and
    /// the path's final length, NUL included.
    /// An empty name is ENOENT, as the kernel says, unless `allowEmpty`
    /// (the call has AT_EMPTY_PATH): then it names the `dirfd` object; at
    /// home the empty name always means the directory handle's object.
    func routePath(arg: Int, dirfd: Int32, into buf: UnsafeMutableRawBufferPointer,
                   allowEmpty: Bool = false) throws(Failure) -> (PathRoute, Int) {
        let cap = min(buf.count, Int(PATH_MAX))
        let len = try local { () throws(Errno) in
            try memory.readCString(address(arg), into: UnsafeMutableRawBufferPointer(rebasing: buf[0..<cap]))
        }
        if len == 0 && !allowEmpty { throw .errno(.noSuchFileOrDirectory) }
        return try routeName(in: buf, length: len, dirfd: dirfd)
    }

    /// Routes a name already in `buf` (`len` bytes, NUL after them) as
    /// `routePath` routes one read from the tracee: a Unix socket's path,
    /// copied out of its `sockaddr_un`.
    func routeName(in buf: UnsafeMutableRawBufferPointer, length len: Int, dirfd: Int32) throws(Failure) -> (PathRoute, Int) {
        let cap = min(buf.count, Int(PATH_MAX))
        let routed = try route(buf, length: len, cap: cap, dirfd: dirfd)
        switch routed.0 {
        case .local, .emulated:
            if sup.policy.hasDeny {
                try denyThroughLinks(UnsafeRawBufferPointer(rebasing: buf[0..<(routed.1 - 1)]), dirfd: dirfd)
            }
        case .forward: break
        }
        // The name was read from the tracee's memory: before acting on it,
        // make sure the notification is still pending, so a recycled tid
        // cannot have fed us another process's bytes. A local verdict only
        // lets the call go on, which fails harmlessly if it is not pending.
        if case .local = routed.0 { return routed }
        // Not simply continued: it goes home or to the local deputy, whose
        // wait hands the receiving on only if it must (`HomeLink.call`), so
        // a call the attribute cache answers wakes no other worker.
        guard sup.listener.isValid(id: id) else { throw .errno(.noSuchProcess) }
        return routed
    }

    /// Routes the name of length `len` in `buf` (see `routePath`).
    private func route(_ buf: UnsafeMutableRawBufferPointer, length len: Int, cap: Int,
                       dirfd: Int32) throws(Failure) -> (PathRoute, Int) {
        let path = UnsafeRawBufferPointer(rebasing: buf[0..<len])
        let norm = worker.normalized
        worker.routedCopy = false
        // nil: the joined path does not fit (ENAMETOOLONG).
        func decide(base: UnsafeRawBufferPointer) -> Verdict? {
            guard let n = PathNormalizer.normalize(base: base, path: path, into: norm) else { return nil }
            worker.normalizedLength = n
            let verdict = sup.policy.decide(UnsafeRawBufferPointer(rebasing: norm[0..<n]))
            worker.routedCopy = verdict.binding == .copy
            if verdict.binding == .deny { worker.decided = .denied }
            return verdict
        }
        let root = UnsafeRawBufferPointer(start: nil, count: 0)

        if len > 0 && path[0] == UInt8(ascii: "/") {
            let b = try Self.binding(decide(base: root))
            // The thread is looked up only for a name of a descriptor.
            if b == .local, let named = MagicLink.descriptor(UnsafeRawBufferPointer(rebasing: norm[0..<worker.normalizedLength])),
               try isCaller(named.pid), let p = try devicePlaceholder(fd: named.fd, unless: placeholder(fd: named.fd)) {
                // /proc/self/fd/N (or /dev/fd/N, /dev/stdin …) of a forwarded
                // descriptor names that file: the object itself, at home.
                buf[0] = 0
                return (.forward(dir: p.handle, keep: p), 1)
            }
            return (b == .forward ? .forward(dir: Wire.rootDir, keep: nil) : .local, len + 1)
        }
        if dirfd != AT_FDCWD {
            guard let p = try devicePlaceholder(fd: dirfd, unless: placeholder(fd: dirfd)) else {
                // A local directory: the name stays beneath it unless a ".."
                // climbs out, maybe into a forwarded tree (then it goes home
                // by its absolute form, as from a local working directory).
                guard PathNormalizer.climbs(path), let base = try localDirectoryPath(dirfd) else { return (.local, len + 1) }
                let b = try Self.binding(base.withUnsafeBytes { decide(base: $0) })
                if b == .local { return (.local, len + 1) }
                return (.forward(dir: Wire.rootDir, keep: nil), try rewriteAbsolute(into: buf, cap: cap))
            }
            // Relative to a forwarded directory: the rules decide on the
            // directory's path joined with the name, as for the cwd.
            guard let base = (p.owner ?? p).path else { return (.forward(dir: p.handle, keep: p), len + 1) }
            let b = try Self.binding(base.withUnsafeBytes { decide(base: $0) })
            if b == .forward || len == 0 { return (.forward(dir: p.handle, keep: p), len + 1) }
            return (.emulated, try rewriteAbsolute(into: buf, cap: cap))
        }
        let process = try thread().process
        switch process.cwd.withLock({ $0 }) {
        case .remote(let dir):
            let b = try Self.binding(dir.path.withUnsafeBytes { decide(base: $0) })
            if b == .forward {
                return (.forward(dir: dir.handle, keep: dir), len + 1)
            }
            // "../../usr/…" from a forwarded directory into a local tree:
            // the kernel's working directory is not that directory, so the
            // call cannot simply continue; it is executed here by name.
            return (.emulated, try rewriteAbsolute(into: buf, cap: cap))
        case .detached(let cwdPath):
            let b = try Self.binding(cwdPath.withUnsafeBytes { decide(base: $0) })
            return (b == .forward ? .forward(dir: Wire.rootDir, keep: nil) : .emulated, try rewriteAbsolute(into: buf, cap: cap))
        case .local(let known):
            let cwdPath: [UInt8]
            if let known { cwdPath = known } else { cwdPath = try kernelWorkingDirectory(process) }
            let b = try Self.binding(cwdPath.withUnsafeBytes { decide(base: $0) })
            if b == .local { return (.local, len + 1) }
            // A relative path that climbs from a local directory into a
            // forwarded one: send home its absolute form.
            return (.forward(dir: Wire.rootDir, keep: nil), try rewriteAbsolute(into: buf, cap: cap))
        }
    }

    /// Where a verdict sends a call: `forward` or `local`. A `deny` verdict
    /// throws its errno; nil (the joined path does not fit) ENAMETOOLONG.
    @inline(__always)
    private static func binding(_ verdict: Verdict?) throws(Failure) -> Binding {
        guard let verdict else { throw .errno(.fileNameTooLong) }
        switch verdict.binding {
        case .forward, .local: return verdict.binding
        case .deny: throw .errno(Errno(rawValue: verdict.errno))
        // Fetched from home (`ByValue`): routed as forwarded, the open decides.
        case .copy: return .forward
        }
    }

    /// Whether a PID named in /proc/PID/fd/N is the caller's process or
    /// thread (nil: a self form, always the caller).
    private func isCaller(_ pid: pid_t?) throws(Failure) -> Bool {
        guard let pid, pid != tid else { return true }
        return pid == (try thread().process.tgid)
    }

    /// Replaces the path in `buf` with its normalized absolute form (left in
    /// `worker.normalized` by routing); returns its length with the NUL.
    private func rewriteAbsolute(into buf: UnsafeMutableRawBufferPointer, cap: Int) throws(Failure) -> Int {
        let n = worker.normalizedLength
        guard n < cap else { throw .errno(.fileNameTooLong) }
        buf.baseAddress!.copyMemory(from: worker.normalized.baseAddress!, byteCount: n)
        buf[n] = 0
        return n + 1
    }

    /// The path of the tracee's local descriptor `fd` if it is a directory
    /// (else nil: the kernel answers ENOTDIR, or EBADF, itself).
    private func localDirectoryPath(_ fd: Int32) throws(Failure) -> [UInt8]? {
        let link = "/proc/\(tid)/fd/\(fd)"
        guard FD.isDirectory(link) else { return nil }
        var buf = [UInt8](repeating: 0, count: Int(PATH_MAX))
        let n = readlink(link, &buf, buf.count)
        guard n > 0, buf[0] == UInt8(ascii: "/") else { return nil }
        return Array(buf[0..<n])
    }

    /// The kernel's idea of a local working directory, read once and cached.
    private func kernelWorkingDirectory(_ process: TraceeProcess) throws(Failure) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: Int(PATH_MAX))
        let n = readlink("/proc/\(tid)/cwd", &buf, buf.count)
        if n <= 0 { throw .errno(lastErrno()) }
        let path = Array(buf[0..<n])
        process.cwd.withLock { cwd in
            if case .local(nil) = cwd { cwd = .local(path: path) }
        }
        return path
    }
}

/// Names under /proc and /dev that are a process's own descriptors:
/// /proc/self/fd/N, /proc/thread-self/fd/N, /proc/PID/fd/N (PID: the caller's
/// process or thread), /dev/fd/N, /dev/stdin, /dev/stdout, /dev/stderr.
enum MagicLink {
    /// The descriptor number such a normalized absolute path names, or nil;
    /// with the PID it names (nil for the self forms), which names the
    /// caller's own descriptor only if it is the caller's process or thread.
    static func descriptor(_ path: UnsafeRawBufferPointer) -> (fd: Int32, pid: pid_t?)? {
        func has(_ prefix: StaticString) -> Int? {
            let n = prefix.utf8CodeUnitCount
            guard path.count >= n, memcmp(path.baseAddress!, prefix.utf8Start, n) == 0 else { return nil }
            return n
        }
        func number(from i: Int, to end: Int) -> Int32? {
            guard i < end, end - i <= 9 else { return nil }
            var v: Int32 = 0
            for k in i..<end {
                let d = path[k] &- UInt8(ascii: "0")
                guard d <= 9 else { return nil }
                v = v * 10 + Int32(d)
            }
            return v
        }
        if path.count == 10, has("/dev/stdin") != nil { return (0, nil) }
        if path.count == 11, has("/dev/stdout") != nil { return (1, nil) }
        if path.count == 11, has("/dev/stderr") != nil { return (2, nil) }
        if let n = has("/dev/fd/") ?? has("/proc/self/fd/") ?? has("/proc/thread-self/fd/") {
            return number(from: n, to: path.count).map { ($0, nil) }
        }
        guard let n = has("/proc/") else { return nil }
        var slash = n
        while slash < path.count && path[slash] != UInt8(ascii: "/") { slash += 1 }
        guard let pid = number(from: n, to: slash),
              slash + 4 < path.count, path[slash + 1] == UInt8(ascii: "f"), path[slash + 2] == UInt8(ascii: "d"),
              path[slash + 3] == UInt8(ascii: "/") else { return nil }
        return number(from: slash + 4, to: path.count).map { ($0, pid) }
    }
}
