import Testing
import Wire

/// The reply contract of the Unix path and sendfile ops (72-75), and of
/// recvfrom with MSG_TRUNC.
@Suite("Socket reply contracts")
struct SocketContractTests {
    @Test func sendfileSendsAtMostTheCountAndCarriesNoPayload() {
        let s = Scalars(3, 5, -1, 65536)
        func check(_ result: Int64, _ count: Int) -> String? {
            ReplyContract.violation(op: .sendfile, scalars: s, requestPayload: 0, result: result, payloadCount: count)
        }
        #expect(check(65536, 0) == nil)
        #expect(check(0, 0) == nil)
        #expect(check(-32, 0) == nil)
        #expect(check(65537, 0) != nil)
        #expect(check(4, 4) != nil)
        #expect(check(-32, 1) != nil)
    }

    @Test func sendtoPathSendsAtMostItsPayloadAndCarriesNoPayload() {
        let s = Scalars(3, 0, Wire.rootDir, 14)
        #expect(Op.sendtoPath.requestScalarCount == 4)
        func check(_ result: Int64, _ count: Int) -> String? {
            ReplyContract.violation(op: .sendtoPath, scalars: s, requestPayload: 23, result: result, payloadCount: count)
        }
        #expect(check(9, 0) == nil)
        #expect(check(-111, 0) == nil)
        #expect(check(24, 0) != nil)
        #expect(check(9, 9) != nil)
    }

    @Test func recvfromWithTruncReportsTheFullLengthButCarriesAtMostTheSize() {
        let address = 110
        func check(flags: Int64, _ result: Int64, _ count: Int) -> String? {
            ReplyContract.violation(op: .recvfrom, scalars: Scalars(3, flags, 2), requestPayload: 0, result: result,
                                    payloadCount: count)
        }
        let trunc = ReplyContract.recvfromTruncate
        // Without MSG_TRUNC: at most the size, its bytes then the address.
        #expect(check(flags: 0, 2, 2 + address) == nil)
        #expect(check(flags: 0, 5, 5 + address) != nil)
        // With it: the full length, the size's bytes then the address.
        #expect(check(flags: trunc, 5, 2 + address) == nil)
        #expect(check(flags: trunc, 5, 2) == nil)
        #expect(check(flags: trunc, 1, 1) == nil)
        #expect(check(flags: trunc, 5, 2 + Wire.maxSockaddr + 1) != nil)
        #expect(check(flags: trunc, 5, 1) != nil)
    }

    @Test func pathBindAndConnectReturnNothing() {
        for op in [Op.bindPath, .connectPath] {
            #expect(op.requestScalarCount == 2)
            #expect(ReplyContract.violation(op: op, scalars: Scalars(3, Wire.rootDir), requestPayload: 10, result: 0,
                                            payloadCount: 0) == nil)
            #expect(ReplyContract.violation(op: op, scalars: Scalars(3, Wire.rootDir), requestPayload: 10, result: 0,
                                            payloadCount: 8) != nil)
        }
    }
}
