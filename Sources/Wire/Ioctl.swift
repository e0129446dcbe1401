/// The ioctl requests a device at home answers (``Op/ioctl``), each with
/// the layout of its argument: the one table both sides use. The client
/// reads and writes the tracee's argument by it; the home executes a
/// request only if it finds it here, and checks the payload against it.
/// Sizes are the x86_64 kernel's (`struct termios` of asm-generic
/// termbits.h, 36 bytes; `struct winsize`, 8; an int, 4).
public struct IoctlLayout: Sendable, Equatable {
    /// The request number (the low 32 bits of ioctl's second argument).
    public let request: UInt32
    public let name: StaticString
    /// Bytes the request reads from its argument (sent as the payload).
    public let input: Int
    /// Bytes it writes to its argument (the reply's payload).
    public let output: Int
    /// The argument is an int passed by value (scalar `value`).
    public let byValue: Bool

    public static func == (a: IoctlLayout, b: IoctlLayout) -> Bool { a.request == b.request }

    /// The kernel's `struct termios` (not glibc's larger one).
    public static let termiosSize = 36
    public static let winsizeSize = 8

    public static let TCGETS: UInt32 = 0x5401, TCSETS: UInt32 = 0x5402, TCSETSW: UInt32 = 0x5403
    public static let TCSETSF: UInt32 = 0x5404, TCSBRK: UInt32 = 0x5409, TCXONC: UInt32 = 0x540A
    public static let TCFLSH: UInt32 = 0x540B, TIOCSCTTY: UInt32 = 0x540E, TIOCGPGRP: UInt32 = 0x540F
    public static let TIOCSPGRP: UInt32 = 0x5410, TIOCOUTQ: UInt32 = 0x5411, TIOCGWINSZ: UInt32 = 0x5413
    public static let TIOCSWINSZ: UInt32 = 0x5414, FIONREAD: UInt32 = 0x541B, TIOCNOTTY: UInt32 = 0x5422
    public static let TIOCGSID: UInt32 = 0x5429
    /// Requests on the tracee's own descriptor (its flags), never sent home.
    public static let FIONBIO: UInt32 = 0x5421, FIONCLEX: UInt32 = 0x5450, FIOCLEX: UInt32 = 0x5451

    public static let table: [IoctlLayout] = [
        IoctlLayout(TCGETS, "TCGETS", output: termiosSize),
        IoctlLayout(TCSETS, "TCSETS", input: termiosSize),
        IoctlLayout(TCSETSW, "TCSETSW", input: termiosSize),
        IoctlLayout(TCSETSF, "TCSETSF", input: termiosSize),
        IoctlLayout(TCSBRK, "TCSBRK", byValue: true),
        IoctlLayout(TCXONC, "TCXONC", byValue: true),
        IoctlLayout(TCFLSH, "TCFLSH", byValue: true),
        IoctlLayout(TIOCSCTTY, "TIOCSCTTY", byValue: true),
        IoctlLayout(TIOCNOTTY, "TIOCNOTTY"),
        IoctlLayout(TIOCGPGRP, "TIOCGPGRP", output: 4),
        IoctlLayout(TIOCSPGRP, "TIOCSPGRP", input: 4),
        IoctlLayout(TIOCGSID, "TIOCGSID", output: 4),
        IoctlLayout(TIOCOUTQ, "TIOCOUTQ", output: 4),
        IoctlLayout(TIOCGWINSZ, "TIOCGWINSZ", output: winsizeSize),
        IoctlLayout(TIOCSWINSZ, "TIOCSWINSZ", input: winsizeSize),
        IoctlLayout(FIONREAD, "FIONREAD", output: 4),
    ]

    init(_ request: UInt32, _ name: StaticString, input: Int = 0, output: Int = 0, byValue: Bool = false) {
        self.request = request
        self.name = name
        self.input = input
        self.output = output
        self.byValue = byValue
    }

    /// The layout of `request` (its low 32 bits, as the kernel reads the
    /// argument), or nil if neither side knows it: ENOTTY.
    public static func of(_ request: Int64) -> IoctlLayout? {
        let r = UInt32(truncatingIfNeeded: request)
        for row in table where row.request == r { return row }
        return nil
    }
}
