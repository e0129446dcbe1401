import CShim
import Glibc
import SysKit
import Wire

/// The working directory: per tracee process, at home or on the target.
enum Cwd {
    /// Implements chdir(2).
    static func chdir(_ c: borrowing Call) throws(Failure) -> Reply {
        let (route, len) = try c.routePath(arg: 0, dirfd: AT_FDCWD, into: c.worker.slot.payload(for: .chdir))
        let process = try c.thread().process
        switch route {
        case .local:
            // Check here what the kernel will check, so that a failing chdir
            // leaves a forwarded working directory in place.
            let norm = c.worker.normalized
            norm[c.worker.normalizedLength] = 0
            let path = norm.baseAddress!.assumingMemoryBound(to: CChar.self)
            try local { () throws(Errno) in
                let fd = try sys { cshim_openat(AT_FDCWD, path, CSHIM_O_PATH | O_DIRECTORY | O_CLOEXEC, 0) }
                defer { Glibc.close(fd) }
                try sys { cshim_faccessat2(fd, "", X_OK, CSHIM_AT_EMPTY_PATH) }
            }
            let known = Array(UnsafeRawBufferPointer(rebasing: norm[0..<c.worker.normalizedLength]))
            process.cwd.withLock { $0 = .local(path: known) }
            return .continueSyscall
        case .forward(let dir, let keep):
            defer { withExtendedLifetime(keep) {} }
            return try moveHome(c, process, dir: dir, payloadLength: len)
        case .emulated:
            // A local directory named from a directory at home: the local
            // deputy checks it; the kernel's working directory cannot follow.
            let r = try c.send(Destination(dir: Wire.rootDir, keep: nil, isLocal: true), .chdir, Scalars(Wire.rootDir),
                               payloadLength: len)
            c.sup.localLink.release(handle: r.result)
            let path = Array(r.payload)
            process.cwd.withLock { $0 = .detached(path) }
            return .value(0)
        }
    }

    /// Implements fchdir(2).
    static func fchdir(_ c: borrowing Call) throws(Failure) -> Reply {
        let process = try c.thread().process
        if let p = try c.placeholder(fd: c.fd(0)) {
            let payload = c.worker.slot.payload(for: .chdir)
            payload[0] = UInt8(ascii: "."); payload[1] = 0
            return try moveHome(c, process, dir: p.handle, payloadLength: 2)
        }
        // A local directory: check it as the kernel will, then let it run.
        let t = try c.thread()
        try local { () throws(Errno) in
            let copy = try PidFD.getFD(t.pidfd, c.fd(0))
            defer { Glibc.close(copy) }
            var st = Glibc.stat()
            try sys { Glibc.fstat(copy, &st) }
            if st.st_mode & S_IFMT != S_IFDIR { throw Errno.notDirectory }
            try sys { cshim_faccessat2(copy, "", X_OK, CSHIM_AT_EMPTY_PATH) }
        }
        process.cwd.withLock { $0 = .local(path: nil) }
        return .continueSyscall
    }

    /// Implements getcwd(2).
    static func getcwd(_ c: borrowing Call) throws(Failure) -> Reply {
        switch try c.thread().process.cwd.withLock({ $0 }) {
        case .local:
            return .continueSyscall
        case .detached(let path):
            var result: Result<Reply, Failure> = .success(.continueSyscall)
            path.withUnsafeBytes { p in
                do throws(Failure) { result = .success(try reply(c, p)) } catch { result = .failure(error) }
            }
            return try result.get()
        case .remote(let dir):
            return try reply(c, try c.home(.getcwd, Scalars(dir.handle)).payload)
        }
    }

    /// getcwd's answer: the path and its NUL, or ERANGE.
    private static func reply(_ c: borrowing Call, _ path: UnsafeRawBufferPointer) throws(Failure) -> Reply {
        let n = path.count
        guard n + 1 <= c.size(1) else { throw .errno(.outOfRange) }
        try local { () throws(Errno) in
            try c.memory.write(c.address(0), from: path.baseAddress!, count: n)
            var nul: UInt8 = 0
            try c.memory.write(c.address(0) + UInt64(n), from: &nul, count: 1)
        }
        return .value(Int64(n + 1))
    }

    /// Opens the directory at home and makes it the process's working directory.
    private static func moveHome(_ c: borrowing Call, _ process: TraceeProcess, dir: Int64, payloadLength: Int) throws(Failure) -> Reply {
        let r = try c.home(.chdir, Scalars(dir), payloadLength: payloadLength)
        let remote = RemoteDir(handle: r.result, path: Array(r.payload), link: c.sup.link)
        process.cwd.withLock { $0 = .remote(remote) }
        return .value(0)
    }
}
