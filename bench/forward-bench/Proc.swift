import Foundation
import Glibc

/// Monotonic nanoseconds.
func nowNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func warn(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

struct SpawnError: Error, CustomStringConvertible {
    let description: String
}

/// A child started with posix_spawn; stdout and stderr go to files (no pipes, so
/// 64 concurrent children cannot deadlock on full pipes).
struct Child {
    let argv: [String]
    let pid: pid_t
    let stdoutPath: String?
    let stderrPath: String?
    let started: UInt64

    /// Starts argv[0] (a path) with stdin from /dev/null.
    static func start(_ argv: [String], stdout: String?, stderr: String?) throws -> Child {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let env = ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        var cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer {
            cArgs.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var pid: pid_t = 0
        let started = nowNs()
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cArgs, &cEnv)
        if rc != 0 {
            throw SpawnError(description: "cannot start \(argv[0]): \(String(cString: strerror(rc)))")
        }
        return Child(argv: argv, pid: pid, stdoutPath: stdout, stderrPath: stderr, started: started)
    }

    /// Waits; returns the exit status (128+N if killed by signal N) and the wall time.
    func wait() -> (status: Int32, wallNs: UInt64) {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let wall = nowNs() - started
        let termsig = status & 0x7f
        return (termsig == 0 ? (status >> 8) & 0xff : 128 + termsig, wall)
    }

    var output: String { stdoutPath.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? "" }
    var errors: String { stderrPath.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? "" }
}

/// Runs argv to completion; returns status, stdout, stderr and wall time.
func runCaptured(_ argv: [String], scratch: String) throws -> (status: Int32, out: String, err: String, wallNs: UInt64) {
    let child = try Child.start(argv, stdout: scratch + ".out", stderr: scratch + ".err")
    let (status, wall) = child.wait()
    return (status, child.output, child.errors, wall)
}

/// The JSON objects, one per line, that a bench program printed.
func jsonLines(_ text: String) -> [[String: Any]] {
    text.split(separator: "\n").compactMap {
        try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Int32 in
            bind(fd, p, len)
            return getsockname(fd, p, &len)
        }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// True once something accepts connections on 127.0.0.1:port.
func canConnect(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
}

/// Writes `size` bytes of pseudo-random data to path (natively, before any run).
func makeFile(_ path: String, size: Int, seed: UInt64) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw SpawnError(description: "\(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    let chunk = 1 << 20
    var buf = [UInt64](repeating: 0, count: chunk / 8)
    var x = seed | 1
    for i in buf.indices {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17
        buf[i] = x
    }
    var left = size
    while left > 0 {
        let n = min(left, chunk)
        let w = buf.withUnsafeBytes { write(fd, $0.baseAddress, n) }
        guard w == n else { throw SpawnError(description: "\(path): short write") }
        left -= n
        buf[0] &+= 1 // blocks differ
    }
}
