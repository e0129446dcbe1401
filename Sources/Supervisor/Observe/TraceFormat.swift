import CShim
import Glibc
import SysKit

/// How `--trace` shows a call, from its row's signature (`SyscallRow.signature`):
/// one letter per argument, then optionally `:` and the result's letter.
///
/// Arguments: `D` dirfd (AT_FDCWD by name), `f` descriptor, `i` int, `z`
/// size, `l` offset, `x` address (NULL), `X` other flags in hex, `p` path
/// and `s` string (quoted, read from the tracee), `o` open flags, `m` mode
/// (left out after open flags that create nothing, as strace does), `a`
/// AT_* flags, `u` unlinkat's flags, `A` access mode, `w` lseek whence,
/// `c` fcntl command and `g` its argument, `k` flock operation, `r`
/// renameat2 flags, `h` openat2's struct open_how, `P` mmap protection,
/// `M` mmap flags.
/// Results: `f` descriptor and `d` number (the default), `b` byte count
/// (added to `--stats` bytes), `x` address, `o` octal mode.
enum TraceFormat {
    /// Appends `name(arguments)` for the call in `n`, reading paths and
    /// structs from the tracee's memory (into `scratch`) while it still waits.
    static func call(_ line: inout TraceLine, row: SyscallRow, _ n: UnsafePointer<cshim_notif>,
                     scratch: UnsafeMutableRawBufferPointer) {
        let a = n.pointee.data.args
        let args = [a.0, a.1, a.2, a.3, a.4, a.5]
        let memory = TraceeMemory(pid: pid_t(bitPattern: n.pointee.pid))
        line.text(row.name)
        line.byte(UInt8(ascii: "("))
        var openFlags: UInt64? = nil
        var cmd: Int64 = 0
        row.signature.withUTF8Buffer { sig in
            for (i, letter) in sig.enumerated() {
                if letter == UInt8(ascii: ":") || i >= 6 { break }
                let v = args[i]
                if letter == UInt8(ascii: "m"), let f = openFlags, !creates(f) { break }
                if i > 0 { line.text(", ") }
                switch letter {
                case UInt8(ascii: "D"):
                    let fd = Int32(truncatingIfNeeded: v)
                    if fd == AT_FDCWD { line.text("AT_FDCWD") } else { line.decimal(Int64(fd)) }
                case UInt8(ascii: "f"), UInt8(ascii: "i"): line.decimal(Int64(Int32(truncatingIfNeeded: v)))
                case UInt8(ascii: "z"): line.unsigned(v)
                case UInt8(ascii: "l"): line.decimal(Int64(bitPattern: v))
                case UInt8(ascii: "x"): if v == 0 { line.text("NULL") } else { line.hex(v) }
                case UInt8(ascii: "p"), UInt8(ascii: "s"): string(&line, at: v, memory: memory, scratch: scratch)
                case UInt8(ascii: "o"):
                    openFlags = v & 0xffff_ffff
                    open(&line, v & 0xffff_ffff)
                case UInt8(ascii: "m"): line.octal(v & 0xffff_ffff)
                case UInt8(ascii: "a"): line.flags(v & 0xffff_ffff, atFlags)
                case UInt8(ascii: "u"): line.flags(v & 0xffff_ffff, [(0x200, "AT_REMOVEDIR")])
                case UInt8(ascii: "A"): line.flags(v & 7, [(4, "R_OK"), (2, "W_OK"), (1, "X_OK")], zero: "F_OK")
                case UInt8(ascii: "w"): line.named(Int64(Int32(truncatingIfNeeded: v)), whence)
                case UInt8(ascii: "c"):
                    cmd = Int64(Int32(truncatingIfNeeded: v))
                    line.named(cmd, fcntlCommands)
                case UInt8(ascii: "g"):
                    if cmd == 0 || cmd == 1030 { line.decimal(Int64(Int32(truncatingIfNeeded: v))) } else { line.hex(v) }
                case UInt8(ascii: "k"): line.flags(v & 0xffff_ffff, [(1, "LOCK_SH"), (2, "LOCK_EX"), (4, "LOCK_NB"), (8, "LOCK_UN")])
                case UInt8(ascii: "r"):
                    line.flags(v & 0xffff_ffff, [(1, "RENAME_NOREPLACE"), (2, "RENAME_EXCHANGE"), (4, "RENAME_WHITEOUT")])
                case UInt8(ascii: "h"): openHow(&line, at: v, memory: memory, scratch: scratch)
                case UInt8(ascii: "P"): line.flags(v & 0xffff_ffff, [(1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC")], zero: "PROT_NONE")
                case UInt8(ascii: "M"): line.flags(v & 0xffff_ffff, mapFlags)
                default: line.hex(v)
                }
            }
        }
        line.byte(UInt8(ascii: ")"))
    }

    /// Appends ` = result` as strace does: the value in the row's result
    /// format, `-1 ENAME (text)` for an error, `?` when the kernel ran the
    /// call in the tracee (the supervisor never sees that result).
    static func result(_ line: inout TraceLine, row: SyscallRow, _ value: Int64?) {
        line.text(" = ")
        guard let value else { line.byte(UInt8(ascii: "?")); return }
        if value < 0 && value > -4096 {
            let e = Int32(-value)
            line.text("-1 ")
            if e == Worker.restartSys {
                line.text("ERESTARTSYS (To be restarted if SA_RESTART is set)")
                return
            }
            if let name = cshim_errno_name(e) { line.cString(name) } else { line.text("E?"); line.decimal(Int64(e)) }
            line.text(" (")
            line.cString(strerror(e))
            line.byte(UInt8(ascii: ")"))
            return
        }
        switch resultLetter(row) {
        case UInt8(ascii: "x"): line.hex(UInt64(bitPattern: value))
        case UInt8(ascii: "o"): line.octal(UInt64(bitPattern: value))
        default: line.decimal(value)
        }
    }

    /// The letter after the signature's `:`, or `d`.
    static func resultLetter(_ row: SyscallRow) -> UInt8 {
        row.signature.withUTF8Buffer { sig in
            guard let colon = sig.firstIndex(of: UInt8(ascii: ":")), colon + 1 < sig.count else { return UInt8(ascii: "d") }
            return sig[colon + 1]
        }
    }

    /// Open flags that create a file take a mode.
    private static func creates(_ flags: UInt64) -> Bool {
        flags & UInt64(O_CREAT) != 0 || flags & UInt64(CSHIM_O_TMPFILE) == UInt64(CSHIM_O_TMPFILE)
    }

    /// A string argument: quoted, NULL, or its address when unreadable.
    private static func string(_ line: inout TraceLine, at address: UInt64, memory: TraceeMemory,
                               scratch: UnsafeMutableRawBufferPointer) {
        if address == 0 { line.text("NULL"); return }
        let cap = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<min(scratch.count, Int(PATH_MAX) + 1)])
        guard let n = try? memory.readCString(address, into: cap) else { line.hex(address); return }
        line.quoted(UnsafeRawBufferPointer(rebasing: cap[0..<n]))
    }

    /// openat2's `{flags=…, mode=…, resolve=…}`, or its address when unreadable.
    private static func openHow(_ line: inout TraceLine, at address: UInt64, memory: TraceeMemory,
                                scratch: UnsafeMutableRawBufferPointer) {
        let size = MemoryLayout<cshim_open_how>.size
        guard (try? memory.readExactly(address, into: scratch.baseAddress!, count: size)) != nil else {
            line.hex(address)
            return
        }
        let how = scratch.loadUnaligned(as: cshim_open_how.self)
        line.text("{flags=")
        open(&line, how.flags)
        line.text(", mode=")
        line.octal(how.mode)
        line.text(", resolve=")
        line.flags(how.resolve, [(1, "RESOLVE_NO_XDEV"), (2, "RESOLVE_NO_MAGICLINKS"), (4, "RESOLVE_NO_SYMLINKS"),
                                 (8, "RESOLVE_BENEATH"), (16, "RESOLVE_IN_ROOT"), (32, "RESOLVE_CACHED")])
        line.byte(UInt8(ascii: "}"))
    }

    /// Open flags: the access mode, then the other flags by name.
    private static func open(_ line: inout TraceLine, _ flags: UInt64) {
        switch flags & 3 {
        case 0: line.text("O_RDONLY")
        case 1: line.text("O_WRONLY")
        case 2: line.text("O_RDWR")
        default: line.text("O_ACCMODE")
        }
        let rest = flags & ~3
        if rest != 0 {
            line.byte(UInt8(ascii: "|"))
            line.flags(rest, openFlagNames)
        }
    }

    /// Several-bit names (O_SYNC, O_TMPFILE) come before their parts.
    private static let openFlagNames: [(UInt64, StaticString)] = [
        (0o100, "O_CREAT"), (0o200, "O_EXCL"), (0o400, "O_NOCTTY"), (0o1000, "O_TRUNC"), (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"), (0o4010000, "O_SYNC"), (0o10000, "O_DSYNC"), (0o20000, "O_ASYNC"), (0o40000, "O_DIRECT"),
        (0o100000, "O_LARGEFILE"), (0o20200000, "O_TMPFILE"), (0o200000, "O_DIRECTORY"), (0o400000, "O_NOFOLLOW"),
        (0o1000000, "O_NOATIME"), (0o2000000, "O_CLOEXEC"), (0o10000000, "O_PATH"),
    ]
    private static let atFlags: [(UInt64, StaticString)] = [
        (0x100, "AT_SYMLINK_NOFOLLOW"), (0x200, "AT_EACCESS"), (0x400, "AT_SYMLINK_FOLLOW"), (0x800, "AT_NO_AUTOMOUNT"),
        (0x1000, "AT_EMPTY_PATH"), (0x2000, "AT_STATX_FORCE_SYNC"), (0x4000, "AT_STATX_DONT_SYNC"), (0x8000, "AT_RECURSIVE"),
    ]
    private static let whence: [(Int64, StaticString)] = [
        (0, "SEEK_SET"), (1, "SEEK_CUR"), (2, "SEEK_END"), (3, "SEEK_DATA"), (4, "SEEK_HOLE"),
    ]
    private static let fcntlCommands: [(Int64, StaticString)] = [
        (0, "F_DUPFD"), (1, "F_GETFD"), (2, "F_SETFD"), (3, "F_GETFL"), (4, "F_SETFL"), (5, "F_GETLK"), (6, "F_SETLK"),
        (7, "F_SETLKW"), (36, "F_OFD_GETLK"), (37, "F_OFD_SETLK"), (38, "F_OFD_SETLKW"), (1030, "F_DUPFD_CLOEXEC"),
    ]
    private static let mapFlags: [(UInt64, StaticString)] = [
        (0x3, "MAP_SHARED_VALIDATE"), (0x1, "MAP_SHARED"), (0x2, "MAP_PRIVATE"), (0x10, "MAP_FIXED"), (0x20, "MAP_ANONYMOUS"),
        (0x800, "MAP_DENYWRITE"), (0x4000, "MAP_NORESERVE"), (0x8000, "MAP_POPULATE"), (0x100000, "MAP_FIXED_NOREPLACE"),
    ]
}
