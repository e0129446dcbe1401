import Glibc
import Testing
import Wire
@testable import HomeNode
@testable import SysKit

/// The listener's parts that need no process: the hand-over note, the
/// confinement rules, and a pending connection driven over a socketpair.
@Suite struct ListenerPartsTests {
    @Test func handOverNoteCarriesSessionPeerAndKeys() throws {
        let keys = SessionKeys(key: Array(repeating: 7, count: 32), clientNonce: Array(repeating: 1, count: 32),
                               serverNonce: Array(repeating: 2, count: 32))
        let note = Array("12\n10.0.0.1:4242\n".utf8) + keys.encoded
        let parsed = try #require(HandOverNote.parse(note))
        #expect(parsed.0 == "12" && parsed.1 == "10.0.0.1:4242" && parsed.2 == keys)
        let bare = try #require(HandOverNote.parse(Array("3\npeer\n".utf8)))
        #expect(bare.2 == nil)
        #expect(HandOverNote.parse(Array("3\npeer\n".utf8) + [1, 2, 3]) == nil)   // keys of the wrong size
        #expect(HandOverNote.parse(Array("3 peer".utf8)) == nil)
    }

    @Test func confinementModes() throws {
        #expect(Confinement.createMode(0o6755, directory: false) == 0o755)
        #expect(Confinement.createMode(0o6755, directory: true) == 0o2755)
        #expect(try Confinement.mknodMode(S_IFIFO | 0o4644) == S_IFIFO | 0o644)
        #expect(throws: Errno.notPermitted) { try Confinement.mknodMode(S_IFCHR | 0o600) }
        #expect(throws: Errno.notPermitted) { try Confinement.mknodMode(S_IFBLK | 0o600) }
        for (name, refused) in [("security.capability\0", true), ("security.capabilityX\0", false), ("user.x\0", false)] {
            let bytes = Array(name.utf8)
            #expect(bytes.withUnsafeBytes { Confinement.grantsPrivilege(xattr: $0) } == refused, "\(name)")
        }
    }

    @Test func pendingConnectionAuthenticatesAndReadsNoFurther() throws {
        let (ours, theirs) = try FD.socketPair()
        defer { close(theirs) }
        try FD.setNonBlocking(ours)
        let key = Array("0123456789abcdef0123456789abcdef".utf8)
        let pending = PendingConnection(fd: ours, peer: "test", key: key, deadline: .max)
        var client = ClientHandshake(key: key, nonce: randomBytes(Wire.nonceSize))
        // The hello and a request right behind it: the connection must stop at the handshake's end.
        try FD.writeFully(theirs, client.helloFrame())
        pending.receive()
        pending.flush()
        #expect(pending.phase == .handshaking)
        let challenge = try readFrame(theirs)
        let authenticate = try #require(try client.receive(challenge))
        try FD.writeFully(theirs, authenticate + [0xAA, 0xBB, 0xCC])
        pending.receive()
        pending.flush()
        #expect(pending.phase == .authenticated && pending.isSettled)
        _ = try client.receive(try readFrame(theirs))
        #expect(client.isComplete)
        #expect(pending.sessionKeys == client.sessionKeys && pending.sessionKeys != nil)
        var rest = [UInt8](repeating: 0, count: 8)
        #expect(recv(ours, &rest, rest.count, Int32(MSG_DONTWAIT)) == 3)   // left for the deputy
    }

    @Test func pendingConnectionRefusesAnOversizedHandshakeFrame() throws {
        let (ours, theirs) = try FD.socketPair()
        defer { close(theirs) }
        try FD.setNonBlocking(ours)
        let pending = PendingConnection(fd: ours, peer: "test", key: Array(repeating: 1, count: 32), deadline: .max)
        var header = [UInt8](repeating: 0, count: Wire.headerSize)
        header.withUnsafeMutableBytes { FrameHeader(length: 4096, op: .hello, flags: [], id: 0).encode(into: $0) }
        try FD.writeFully(theirs, header)
        pending.receive()
        guard case .gone(let why) = pending.phase else { Issue.record("\(pending.phase)"); return }
        #expect(why.contains("4096 bytes"))
    }

    private func readFrame(_ fd: CInt) throws -> [UInt8] {
        var header = [UInt8](repeating: 0, count: Wire.headerSize)
        _ = try header.withUnsafeMutableBytes { (b) throws(Errno) in try FD.readFully(fd, b.baseAddress!, b.count) }
        let h = try header.withUnsafeBytes { (b) throws(WireError) in try FrameHeader.decode(b) }
        var body = [UInt8](repeating: 0, count: Int(h.length) - Wire.headerSize)
        if !body.isEmpty {
            _ = try body.withUnsafeMutableBytes { (b) throws(Errno) in try FD.readFully(fd, b.baseAddress!, b.count) }
        }
        return header + body
    }
}
