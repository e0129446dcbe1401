import Glibc
import Testing
import Wire
@testable import HomeNode
@testable import SysKit

/// The home's handle table under concurrency: a handle closed while a
/// call uses it keeps its descriptor (and so its number) until that call
/// ends.
/// Descriptors are pipe ends, whose inodes are unique: "still open" means
/// the number still names that pipe, even if tests running in parallel
/// reuse freed numbers.
@Suite struct HandlesTests {
    final class PipeEnd {
        let fd: CInt
        let ino: UInt64
        let other: CInt
        init() {
            var p: [CInt] = [0, 0]
            pipe(&p)
            fd = p[0]
            other = p[1]
            var st = stat()
            fstat(fd, &st)
            ino = UInt64(st.st_ino)
        }
        deinit { close(other) }
        var isOpen: Bool {
            var st = stat()
            return fstat(fd, &st) == 0 && UInt64(st.st_ino) == ino
        }
    }

    @Test func unknownAndNegativeHandlesAreEBADF() {
        let h = Handles()
        #expect(throws: Errno.badFileDescriptor) { try h.acquire(7) }
        #expect(throws: Errno.badFileDescriptor) { try h.acquire(-1) }
        #expect(throws: Errno.badFileDescriptor) { try h.acquire(Int64(Int32.max) + 1) }
        #expect(throws: Errno.badFileDescriptor) { try h.close(7) }
    }

    @Test func opensBeyondTheLimitAreEMFILEAndClosed() throws {
        let h = Handles(limit: 2), a = PipeEnd(), b = PipeEnd(), c = PipeEnd()
        try h.insert(a.fd, kind: .file)
        try h.insert(b.fd, kind: .file)
        #expect(throws: Errno.tooManyOpenFiles) { try h.insert(c.fd, kind: .file) }
        #expect(!c.isOpen)                             // the refused descriptor does not leak
        try h.close(Int64(a.fd))
        let d = PipeEnd()
        try h.insert(d.fd, kind: .file)                // a close makes room again
    }

    @Test func closeWithoutUsersClosesAtOnce() throws {
        let h = Handles(), p = PipeEnd()
        try h.insert(p.fd, kind: Handles.kind(of: p.fd))
        try h.close(Int64(p.fd))
        #expect(!p.isOpen)
    }

    @Test func closeUnderABlockedCallDefersTheDescriptor() throws {
        let h = Handles(), p = PipeEnd()
        try h.insert(p.fd, kind: .stream)
        let held = try h.acquire(Int64(p.fd))        // a call is using it
        try h.close(Int64(p.fd))
        #expect(p.isOpen)                              // the number is not free for a new open
        #expect(throws: Errno.badFileDescriptor) { try h.acquire(Int64(p.fd)) }   // but no new call gets it
        #expect(throws: Errno.badFileDescriptor) { try h.close(Int64(p.fd)) }
        #expect(h.kind(Int64(p.fd)) == nil)
        h.release(held)                                // the call ends
        #expect(!p.isOpen)
    }

    @Test func kindsFollowTheObject() {
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(null) }
        #expect(Handles.kind(of: null) == .stream)     // a character device may block
        let p = PipeEnd()
        defer { close(p.fd) }
        #expect(Handles.kind(of: p.fd) == .stream)
        let dir = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(dir) }
        #expect(Handles.kind(of: dir) == .file)
    }

    @Test func closeAllLeavesBusyHandlesToTheirCalls() throws {
        let h = Handles(), idle = PipeEnd(), busy = PipeEnd()
        try h.insert(idle.fd, kind: .file)
        try h.insert(busy.fd, kind: .stream)
        let held = try h.acquire(Int64(busy.fd))
        #expect(h.closeAll() == 1)
        #expect(!idle.isOpen && busy.isOpen)
        h.release(held)
        #expect(!busy.isOpen)
    }
}
