import Testing
import Wire

/// The reply contract of the Unix path and sendfile ops (72-74).
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
