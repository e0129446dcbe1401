import CShim
import Glibc
import Policy
import SysKit

extension Call {
    /// With `deny` rules in force, a call the lexical path leaves local is
    /// decided again on the path the kernel will resolve: a symlink of the
    /// target (`/tmp/l -> /srv/secret`), a `..` after one, a name relative to
    /// a descriptor of a directory above the denied tree. The supervisor
    /// resolves the name as the tracee would (relative to its working
    /// directory or `dirfd`, `/proc/self` meaning the tracee): the directory
    /// part with every symlink followed, then the last component both as
    /// named and, if it is a symlink, as followed; the call fails with a deny
    /// rule's errno if any of them lies under one. Without deny rules this
    /// is never run. `path` is the name as routed (absolute for `.emulated`).
    func denyThroughLinks(_ path: UnsafeRawBufferPointer, dirfd: Int32) throws(Failure) {
        let cap = Int(PATH_MAX) + 64
        try withUnsafeTemporaryAllocation(byteCount: 3 * cap, alignment: 1) { (scratch) throws(Failure) in
            var name = ByteWriter(UnsafeMutableRawBufferPointer(rebasing: scratch[0..<cap]))
            var last = ByteWriter(UnsafeMutableRawBufferPointer(rebasing: scratch[cap..<(2 * cap)]))
            let resolved = UnsafeMutableRawBufferPointer(rebasing: scratch[(2 * cap)...])
            // The base: "/" for an absolute name, else the tracee's working
            // directory or dirfd, opened through /proc/TID.
            var base = AT_FDCWD
            if path.count == 0 || path[0] != UInt8(ascii: "/") {
                name.append("/proc/")
                name.append(Int(tid))
                if dirfd == AT_FDCWD { name.append("/cwd") } else { name.append("/fd/"); name.append(Int(dirfd)) }
                base = name.withCString { cshim_openat(AT_FDCWD, $0, CSHIM_O_PATH | O_DIRECTORY | O_CLOEXEC, 0) }
                if base < 0 { return }
                name.count = 0
            }
            defer { if base >= 0 { Glibc.close(base) } }
            // The name, with a leading /proc/self or /proc/thread-self made
            // the tracee's, split at its last component.
            var from = 0
            if let n = procSelfPrefix(path) {
                name.append("/proc/")
                name.append(Int(tid))
                from = n
            }
            guard name.append(UnsafeRawBufferPointer(rebasing: path[from...])) else { return }
            if name.count == 0 { name.append(".") }
            while name.count > 1 && name.bytes[name.count - 1] == UInt8(ascii: "/") { name.count -= 1 }
            var slash = name.count
            while slash > 0 && name.bytes[slash - 1] != UInt8(ascii: "/") { slash -= 1 }
            let lastCount = name.count - slash
            let plain = lastCount > 0 && !(lastCount == 1 && name.bytes[slash] == UInt8(ascii: "."))
                && !(lastCount == 2 && name.bytes[slash] == UInt8(ascii: ".") && name.bytes[slash + 1] == UInt8(ascii: "."))
            if plain {
                _ = last.append(UnsafeRawBufferPointer(rebasing: name.bytes[slash..<name.count]))
                // The directory part: "." for a bare name, "/" for one in the root.
                name.count = slash == 0 ? 0 : max(1, slash - 1)
                if slash == 0 { name.append(".") }
            }
            // The directory part, every symlink followed.
            let dir = name.withCString { cshim_openat(base, $0, CSHIM_O_PATH | O_DIRECTORY | O_CLOEXEC, 0) }
            guard dir >= 0 else { return }
            defer { Glibc.close(dir) }
            guard var r = descriptorPath(dir, into: resolved) else { return }
            if plain {
                // The last component as named (the call may act on a symlink itself).
                guard r + 1 + last.count <= resolved.count else { return }
                if r > 1 { resolved[r] = UInt8(ascii: "/"); r += 1 }
                for k in 0..<last.count { resolved[r + k] = last.bytes[k] }
                r += last.count
            }
            try refuseIfDenied(UnsafeRawBufferPointer(rebasing: resolved[0..<r]))
            guard plain else { return }
            // And as followed, if it is a symlink to somewhere else.
            let target = last.withCString { cshim_openat(dir, $0, CSHIM_O_PATH | O_CLOEXEC, 0) }
            guard target >= 0 else { return }
            defer { Glibc.close(target) }
            if let t = descriptorPath(target, into: resolved) {
                try refuseIfDenied(UnsafeRawBufferPointer(rebasing: resolved[0..<t]))
            }
        }
    }

    /// Throws the errno of the deny rule deciding the absolute `path`, if one does.
    private func refuseIfDenied(_ path: UnsafeRawBufferPointer) throws(Failure) {
        let verdict = sup.policy.decide(path)
        if verdict.binding == .deny {
            worker.decided = .denied
            throw .errno(Errno(rawValue: verdict.errno))
        }
    }

    /// The path the supervisor's descriptor `fd` names (readlink of its
    /// /proc/self/fd entry), or nil if it is not an absolute path.
    private func descriptorPath(_ fd: Int32, into out: UnsafeMutableRawBufferPointer) -> Int? {
        var linkName: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        return withUnsafeMutableBytes(of: &linkName) { l -> Int? in
            var w = ByteWriter(l)
            w.append("/proc/self/fd/")
            w.append(Int(fd))
            let r = w.withCString { readlink($0, out.baseAddress!.assumingMemoryBound(to: CChar.self), out.count) }
            guard r > 0, r < out.count, out[0] == UInt8(ascii: "/") else { return nil }
            return r
        }
    }
}

/// The length of a leading "/proc/self" or "/proc/thread-self" component
/// of `path`, or nil.
private func procSelfPrefix(_ path: UnsafeRawBufferPointer) -> Int? {
    for prefix: StaticString in ["/proc/self", "/proc/thread-self"] {
        let n = prefix.utf8CodeUnitCount
        if path.count >= n, memcmp(path.baseAddress!, prefix.utf8Start, n) == 0,
           path.count == n || path[n] == UInt8(ascii: "/") { return n }
    }
    return nil
}

/// Text built in a fixed buffer without allocating, one byte kept for the
/// NUL that `withCString` adds.
private struct ByteWriter {
    let bytes: UnsafeMutableRawBufferPointer
    var count = 0

    init(_ bytes: UnsafeMutableRawBufferPointer) { self.bytes = bytes }

    /// Appends `part` if it fits (with the NUL); returns whether it did.
    @discardableResult
    mutating func append(_ part: UnsafeRawBufferPointer) -> Bool {
        guard count + part.count < bytes.count else { return false }
        if part.count > 0 { (bytes.baseAddress! + count).copyMemory(from: part.baseAddress!, byteCount: part.count) }
        count += part.count
        return true
    }

    mutating func append(_ text: StaticString) {
        append(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Appends a non-negative number in decimal.
    mutating func append(_ value: Int) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { d in
            var x = value, c = 0
            repeat { d[d.count - 1 - c] = UInt8(ascii: "0") + UInt8(x % 10); x /= 10; c += 1 } while x > 0
            append(UnsafeRawBufferPointer(rebasing: d[(d.count - c)...]))
        }
    }

    /// Runs `body` with the text NUL-terminated.
    func withCString<T>(_ body: (UnsafePointer<CChar>) -> T) -> T {
        bytes[count] = 0
        return body(bytes.baseAddress!.assumingMemoryBound(to: CChar.self))
    }
}
