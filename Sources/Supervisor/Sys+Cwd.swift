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
        guard case .remote(let dir) = try c.thread().process.cwd.withLock({ $0 }) else { return .continueSyscall }
        let r = try c.home(.getcwd, Scalars(dir.handle))
        let n = r.payload.count
        guard n + 1 <= c.size(1) else { throw .errno(.outOfRange) }
        try local { () throws(Errno) in
            try c.memory.write(c.address(0), from: r.payload.baseAddress!, count: n)
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
