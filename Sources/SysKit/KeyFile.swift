import CShim
import Glibc

/// The pre-shared key, read the way ssh reads a private key, from one
/// descriptor: opened without following a symlink and without blocking (a
/// FIFO cannot hang start-up), then checked with fstat on that descriptor,
/// so nothing can be swapped in between the check and the read. The file
/// must be a regular file owned by the user running the tool, not readable
/// or writable by group or others, and hold at least 32 bytes (one trailing
/// newline is not part of the key).
public enum KeyFile {
    public struct Problem: Error, CustomStringConvertible {
        public var description: String
    }

    public static let minimumLength = 32
    /// Larger files are not keys (and are not read whole).
    static let maximumLength = 1 << 16

    public static func load(_ path: String) throws(Problem) -> [UInt8] {
        let fd = cshim_openat(AT_FDCWD, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0)
        if fd < 0 {
            let e = Glibc.errno
            if e == ELOOP {
                throw Problem(description: "key file \(path) is a symbolic link: name the key file itself")
            }
            throw Problem(description: "cannot read key file \(path): \(String(cString: strerror(e)))")
        }
        defer { Glibc.close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw Problem(description: "cannot read key file \(path): \(String(cString: strerror(Glibc.errno)))")
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw Problem(description: "key file \(path) is not a regular file")
        }
        guard st.st_uid == geteuid() else {
            throw Problem(description: "key file \(path) is owned by uid \(st.st_uid), not by the user running this (uid \(geteuid()))")
        }
        if st.st_mode & 0o077 != 0 {
            throw Problem(description: "key file \(path) has permissions \(String(st.st_mode & 0o777, radix: 8)): it must not be accessible by group or others (chmod 600 \(path))")
        }
        var bytes: [UInt8]
        do { bytes = try FD.readAll(fd, limit: maximumLength) } catch {
            throw Problem(description: "cannot read key file \(path): \(String(cString: strerror(error.rawValue)))")
        }
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        if bytes.count < minimumLength {
            throw Problem(description: "key file \(path) holds \(bytes.count) bytes: a key must be at least \(minimumLength) bytes (e.g. head -c 32 /dev/urandom | base64 > \(path))")
        }
        return bytes
    }
}
