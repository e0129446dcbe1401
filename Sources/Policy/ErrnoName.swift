import Glibc

/// The errno names a `deny` rule may give ("EACCES"), and back.
public enum ErrnoName {
    /// Every accepted name with its value on this system.
    public static let all: [(name: String, value: Int32)] = [
        ("EPERM", EPERM), ("ENOENT", ENOENT), ("EIO", EIO), ("ENXIO", ENXIO), ("E2BIG", E2BIG),
        ("ENOEXEC", ENOEXEC), ("EBADF", EBADF), ("EAGAIN", EAGAIN), ("ENOMEM", ENOMEM), ("EACCES", EACCES),
        ("EFAULT", EFAULT), ("EBUSY", EBUSY), ("EEXIST", EEXIST), ("EXDEV", EXDEV), ("ENODEV", ENODEV),
        ("ENOTDIR", ENOTDIR), ("EISDIR", EISDIR), ("EINVAL", EINVAL), ("ENFILE", ENFILE), ("EMFILE", EMFILE),
        ("ETXTBSY", ETXTBSY), ("EFBIG", EFBIG), ("ENOSPC", ENOSPC), ("ESPIPE", ESPIPE), ("EROFS", EROFS),
        ("EMLINK", EMLINK), ("ENAMETOOLONG", ENAMETOOLONG), ("ENOSYS", ENOSYS), ("ENOTEMPTY", ENOTEMPTY),
        ("ELOOP", ELOOP), ("ENODATA", ENODATA), ("EOPNOTSUPP", EOPNOTSUPP), ("ENOTSUP", ENOTSUP),
        ("ECONNREFUSED", ECONNREFUSED), ("EHOSTUNREACH", EHOSTUNREACH), ("ENETUNREACH", ENETUNREACH),
        ("ETIMEDOUT", ETIMEDOUT), ("EDQUOT", EDQUOT), ("ESTALE", ESTALE), ("ENOMEDIUM", ENOMEDIUM),
        ("EKEYREJECTED", EKEYREJECTED), ("ENOLCK", ENOLCK), ("ENOTTY", ENOTTY),
    ]

    /// The value of an errno name, or nil if it is not one.
    public static func value(of name: String) -> Int32? {
        all.first { $0.name == name }?.value
    }

    /// The name of an errno value (the first listed: EOPNOTSUPP before
    /// ENOTSUP, which Linux gives the same value), or its number.
    public static func name(of value: Int32) -> String {
        all.first { $0.value == value }?.name ?? String(value)
    }
}
