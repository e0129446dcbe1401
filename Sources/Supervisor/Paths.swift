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
}

extension Call {
    /// Reads the path argument `arg` into `buf` (NUL included) and routes it
    /// against `dirfd` (AT_FDCWD for the working directory). May rewrite the
    /// path in `buf` to its absolute form when a relative path leaves a
    /// local working directory for a forwarded one. Returns the route and
    /// the path's final length, NUL included.
    func routePath(arg: Int, dirfd: Int32, into buf: UnsafeMutableRawBufferPointer) throws(Failure) -> (PathRoute, Int) {
        let cap = min(buf.count, Int(PATH_MAX))
        let len = try local { () throws(Errno) in
            try memory.readCString(address(arg), into: UnsafeMutableRawBufferPointer(rebasing: buf[0..<cap]))
        }
        guard sup.listener.isValid(id: id) else { throw .errno(.noSuchProcess) }
        let path = UnsafeRawBufferPointer(rebasing: buf[0..<len])
        let norm = worker.normalized
        // nil: the joined path does not fit (ENAMETOOLONG).
        func decide(base: UnsafeRawBufferPointer) -> Binding? {
            guard let n = PathNormalizer.normalize(base: base, path: path, into: norm) else { return nil }
            worker.normalizedLength = n
            return sup.policy.decide(UnsafeRawBufferPointer(rebasing: norm[0..<n]))
        }
        let tooLong = Failure.errno(.fileNameTooLong)
        let root = UnsafeRawBufferPointer(start: nil, count: 0)

        if len > 0 && path[0] == UInt8(ascii: "/") {
            guard let b = decide(base: root) else { throw tooLong }
            return (b == .forward ? .forward(dir: Wire.rootDir, keep: nil) : .local, len + 1)
        }
        if dirfd != AT_FDCWD {
            // Relative to a descriptor: a forwarded directory stays at home.
            if let p = try placeholder(fd: dirfd) { return (.forward(dir: p.handle, keep: p), len + 1) }
            return (.local, len + 1)
        }
        let process = try thread().process
        switch process.cwd.withLock({ $0 }) {
        case .remote(let dir):
            guard let b = dir.path.withUnsafeBytes({ decide(base: $0) }) else { throw tooLong }
            if b == .forward {
                return (.forward(dir: dir.handle, keep: dir), len + 1)
            }
            // "../../usr/…" from a forwarded directory into a local tree:
            // the kernel's working directory is not that directory, so the
            // call cannot simply continue there.
            throw .errno(.improperLink)
        case .local(let known):
            let cwdPath: [UInt8]
            if let known { cwdPath = known } else { cwdPath = try kernelWorkingDirectory(process) }
            guard let b = cwdPath.withUnsafeBytes({ decide(base: $0) }) else { throw tooLong }
            if b == .local { return (.local, len + 1) }
            // A relative path that climbs from a local directory into a
            // forwarded one: send home its absolute form (now in `norm`).
            let n = worker.normalizedLength
            guard n < cap else { throw tooLong }
            buf.baseAddress!.copyMemory(from: norm.baseAddress!, byteCount: n)
            buf[n] = 0
            return (.forward(dir: Wire.rootDir, keep: nil), n + 1)
        }
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
