import CShim
import Glibc
import SysKit

extension HomeLink {
    /// Whether a request's payload may come from a pipe (`call`'s
    /// `payloadPipe`): the stream is not sealed, so its bytes need not pass
    /// through the cipher.
    var splicesPayloads: Bool { splicer != nil }

    /// Writes a request's header, then splices its `count` payload bytes
    /// from `pipe` after it, all under the outgoing lock (the frame stays
    /// whole); false if the stream failed. Unsealed streams only.
    func write(_ header: UnsafeRawBufferPointer, then pipe: CInt, _ count: Int) -> Bool {
        precondition(splicer != nil, "a sealed stream's payload must be sealed")
        return outgoing.send(header) { bytes in
            guard (try? FD.writeFully(fd, bytes.baseAddress!, bytes.count)) != nil else { return false }
            var left = count
            while left > 0 {
                let n = cshim_splice(pipe, nil, fd, left, 0)
                if n > 0 {
                    left -= n
                } else if n < 0 && Glibc.errno == EINTR {
                    continue
                } else {
                    return false
                }
            }
            return true
        }
    }
}
