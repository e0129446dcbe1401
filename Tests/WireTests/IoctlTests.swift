import Testing
import Wire

/// The ioctl table both sides use (`IoctlLayout`) and what a reply to the
/// device ops may say.
@Suite("Device ops")
struct IoctlTests {
    @Test func layoutsAreTheKernelsSizes() {
        #expect(IoctlLayout.of(0x5401)?.output == 36)   // TCGETS: struct termios
        #expect(IoctlLayout.of(0x5402)?.input == 36)    // TCSETS
        #expect(IoctlLayout.of(0x5413)?.output == 8)    // TIOCGWINSZ
        #expect(IoctlLayout.of(0x5414)?.input == 8)     // TIOCSWINSZ
        #expect(IoctlLayout.of(0x540B)?.byValue == true) // TCFLSH
        #expect(IoctlLayout.of(0x1_0000_5401)?.request == 0x5401, "the kernel reads the low 32 bits")
        #expect(IoctlLayout.of(0x54FF) == nil)
        #expect(IoctlLayout.of(0x5421) == nil, "FIONBIO acts on the tracee's own descriptor")
        let requests = IoctlLayout.table.map(\.request)
        #expect(Set(requests).count == requests.count)
    }

    @Test func ioctlReplyIsExactlyTheStructItWrites() {
        func check(_ request: Int64, _ result: Int64, _ count: Int) -> String? {
            ReplyContract.violation(op: .ioctl, scalars: Scalars(3, request, 0), requestPayload: 0, result: result,
                                    payloadCount: count)
        }
        #expect(check(0x5401, 0, 36) == nil)
        #expect(check(0x5401, 0, 35) != nil)
        #expect(check(0x5401, 0, 60) != nil)
        #expect(check(0x5414, 0, 0) == nil)
        #expect(check(0x5414, 0, 8) != nil)
        #expect(check(0x54FF, 0, 4) != nil, "an unknown request carries nothing")
        #expect(check(0x5401, -25, 0) == nil)
    }

    @Test func openAndWindowSizeReplies() {
        func open(_ count: Int) -> String? {
            ReplyContract.violation(op: .openat, scalars: Scalars(-100, 2, 0, 0), requestPayload: 11, result: 5,
                                    payloadCount: count)
        }
        #expect(open(0) == nil)
        #expect(open(1) == nil)
        #expect(open(2) != nil)
        func size(_ count: Int) -> String? {
            ReplyContract.violation(op: .windowSize, scalars: Scalars(3, 24, 80), requestPayload: 0, result: 0,
                                    payloadCount: count)
        }
        #expect(size(8) == nil)
        #expect(size(0) != nil)
    }

    /// A terminal offer is the secret, then a directory's path (at most PATH_MAX); an accept carries nothing.
    @Test func terminalHandoverReplies() {
        func offer(_ count: Int) -> String? {
            ReplyContract.violation(op: .terminalOffer, scalars: Scalars(), requestPayload: 0, result: 3, payloadCount: count)
        }
        #expect(offer(Wire.terminalSecretSize + 20) == nil)
        #expect(offer(Wire.terminalSecretSize) != nil, "no directory")
        #expect(offer(Wire.terminalSecretSize + ReplyContract.maxPath + 1) != nil)
        #expect(ReplyContract.violation(op: .terminalAccept, scalars: Scalars(3), requestPayload: 0, result: 4,
                                        payloadCount: 1) != nil)
        #expect(ReplyContract.violation(op: .terminalAccept, scalars: Scalars(3), requestPayload: 0, result: -13,
                                        payloadCount: 0) == nil)
    }
}
