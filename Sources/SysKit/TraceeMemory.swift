import CShim
import Glibc

/// Reads and writes a tracee's memory with process_vm_readv/writev: one
/// syscall per transfer, no ptrace stop.
public struct TraceeMemory: Sendable {
    public let pid: pid_t
    public init(pid: pid_t) { self.pid = pid }

    /// Reads up to `count` bytes at `address`; returns how many were readable
    /// (a read that runs into an unmapped page stops there).
    public func read(_ address: UInt64, into buf: UnsafeMutableRawPointer, count: Int) throws(Errno) -> Int {
        var local = iovec(iov_base: buf, iov_len: count)
        var remote = iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt(address)), iov_len: count)
        return try sys { cshim_process_vm_readv(pid, &local, 1, &remote, 1) }
    }

    /// Reads exactly `count` bytes or throws EFAULT.
    public func readExactly(_ address: UInt64, into buf: UnsafeMutableRawPointer, count: Int) throws(Errno) {
        if count == 0 { return }
        if try read(address, into: buf, count: count) != count { throw Errno.badAddress }
    }

    /// Reads a NUL-terminated string of at most `buf.count - 1` bytes into
    /// `buf`, NUL included; returns its length without the NUL. A string
    /// longer than the buffer is ENAMETOOLONG, as the kernel says for paths.
    public func readCString(_ address: UInt64, into buf: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        if address == 0 { throw Errno.badAddress }
        var have = 0
        var addr = address
        // Read page by page so a string ending just before an unmapped page works.
        while have < buf.count {
            let pageLeft = 4096 - Int(addr & 4095)
            let want = min(pageLeft, buf.count - have)
            let got = try read(addr, into: buf.baseAddress! + have, count: want)
            if got == 0 { throw Errno.badAddress }
            if let nul = memchr(buf.baseAddress! + have, 0, got) {
                return buf.baseAddress!.distance(to: nul)
            }
            have += got
            addr += UInt64(got)
        }
        throw Errno.fileNameTooLong
    }

    /// Writes `count` bytes to `address`; a short write is EFAULT.
    public func write(_ address: UInt64, from buf: UnsafeRawPointer, count: Int) throws(Errno) {
        if count == 0 { return }
        var local = iovec(iov_base: UnsafeMutableRawPointer(mutating: buf), iov_len: count)
        var remote = iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt(address)), iov_len: count)
        let n = try sys { cshim_process_vm_writev(pid, &local, 1, &remote, 1) }
        if n != count { throw Errno.badAddress }
    }
}
