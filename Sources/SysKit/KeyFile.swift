import CShim
import Glibc

/// The pre-shared key, read the way ssh reads a private key: the file must
/// not be readable by group or others, and must hold at least 32 bytes
/// (one trailing newline is not part of the key).
public enum KeyFile {
    public struct Problem: Error, CustomStringConvertible {
        public var description: String
    }

    public static let minimumLength = 32

    public static func load(_ path: String) throws(Problem) -> [UInt8] {
        var st = stat()
        if stat(path, &st) != 0 {
            throw Problem(description: "cannot read key file \(path): \(String(cString: strerror(Glibc.errno)))")
        }
        if st.st_mode & 0o077 != 0 {
            throw Problem(description: "key file \(path) has permissions \(String(st.st_mode & 0o777, radix: 8)): it must not be accessible by group or others (chmod 600 \(path))")
        }
        var bytes: [UInt8]
        do { bytes = try FD.readSmallFile(path) } catch {
            throw Problem(description: "cannot read key file \(path): \(String(cString: strerror(error.rawValue)))")
        }
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        if bytes.count < minimumLength {
            throw Problem(description: "key file \(path) holds \(bytes.count) bytes: a key must be at least \(minimumLength) bytes (e.g. head -c 32 /dev/urandom | base64 > \(path))")
        }
        return bytes
    }
}
