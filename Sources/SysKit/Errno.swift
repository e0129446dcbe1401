import CShim
import Glibc
@_exported import SystemPackage

/// The errno of the last failed libc call, as a typed error.
@inline(__always)
public func lastErrno() -> Errno { Errno(rawValue: Glibc.errno) }

/// Runs a libc-style call that returns -1 and sets errno on failure,
/// retrying on EINTR; throws every other failure as `Errno`.
@inline(__always) @discardableResult
public func sys<T: FixedWidthInteger>(_ call: () -> T) throws(Errno) -> T {
    while true {
        let r = call()
        if r != -1 { return r }
        let e = lastErrno()
        if e != .interrupted { throw e }
    }
}

/// Like `sys` but does not retry EINTR (for calls whose interruption the
/// caller must see, such as a blocking notification receive).
@inline(__always) @discardableResult
public func sysOnce<T: FixedWidthInteger>(_ call: () -> T) throws(Errno) -> T {
    let r = call()
    if r == -1 { throw lastErrno() }
    return r
}

/// Writes a message to standard error with one write(2) (lines from
/// several threads do not interleave).
public func printError(_ message: String) {
    var text = message
    if !text.hasSuffix("\n") { text += "\n" }
    text.withCString { _ = Glibc.write(2, $0, strlen($0)) }
}
