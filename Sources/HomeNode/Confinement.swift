import Glibc
import SysKit

/// The privilege rules of a confined export root (`homestub --root`), for
/// a home that may run as root: no device nodes made, none opened for
/// data (see `ExportRoot.open`), no set-uid or set-gid programs made, nor
/// programs with file capabilities.
enum Confinement {
    static let setID = UInt32(S_ISUID | S_ISGID)

    /// A character or block device (what `--allow-devices` is about).
    static func isDevice(_ mode: mode_t) -> Bool {
        let type = mode & S_IFMT
        return type == S_IFCHR || type == S_IFBLK
    }

    /// A create or chmod mode without set-uid, and without set-gid unless
    /// it is for a directory (there it only passes the group on, which
    /// grants nothing).
    static func createMode(_ mode: UInt32, directory: Bool) -> UInt32 {
        directory ? mode & ~UInt32(S_ISUID) : mode & ~setID
    }

    /// File capabilities are set-uid by other means: `security.capability`
    /// may not be set (EPERM). `name` is the request's NUL-terminated name.
    static func grantsPrivilege(xattr name: UnsafeRawBufferPointer) -> Bool {
        let capability = "security.capability".utf8
        let bytes = name.prefix { $0 != 0 }
        return bytes.count == capability.count && bytes.elementsEqual(capability)
    }

    /// mknod: devices are EPERM; FIFOs, sockets and regular files are
    /// made without set-id bits.
    static func mknodMode(_ mode: mode_t) throws(Errno) -> mode_t {
        if isDevice(mode) { throw Errno.notPermitted }
        return mode & ~mode_t(setID)
    }
}
