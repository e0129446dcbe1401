import Glibc
import SysKit
import Testing

// MARK: - SpinBudget's probe

/// A budget polled down to nothing on `fd`, which never becomes readable:
/// each timed-out poll halves it.
private func exhausted(maximum: Int, _ fd: CInt) -> SpinBudget {
    var b = SpinBudget(maximum: maximum)
    while b.current > 0 { _ = b.spin(fd) }
    return b
}

/// One wait that slept for `microseconds` (as if the message had come then).
private func sleptWait(_ b: inout SpinBudget, _ fd: CInt, microseconds: UInt32) {
    #expect(b.spin(fd) == false)
    usleep(microseconds)
    b.woke()
}

/// Runs `body` with the read end of a new pipe nothing is written to.
private func withSilentPipe(_ body: (CInt) -> Void) {
    var fds: [CInt] = [-1, -1]
    #expect(pipe(&fds) == 0)
    defer { close(fds[0]); close(fds[1]) }
    body(fds[0])
}

@Test func sleepsWithGapsJustOverTheMaximumEndInAProbeOfTheWholeMaximum() {
    withSilentPipe { fd in
        // Gaps of 1.5 maximums, as a halted vCPU's wake-up makes of a short
        // gap: seven leave it at 0, the eighth sets the maximum for one probe.
        var b = exhausted(maximum: 2000, fd)
        for _ in 0..<7 { sleptWait(&b, fd, microseconds: 3000) }
        #expect(b.current == 0)
        sleptWait(&b, fd, microseconds: 3000)
        #expect(b.current == 2000)
    }
}

@Test func aLongGapStartsTheCountAgainAndAShortOneSetsTheBudgetAtOnce() {
    withSilentPipe { fd in
        var b = exhausted(maximum: 2000, fd)
        for _ in 0..<6 { sleptWait(&b, fd, microseconds: 3000) }
        sleptWait(&b, fd, microseconds: 12000)   // over probeSpan maximums: an idle stream
        for _ in 0..<7 { sleptWait(&b, fd, microseconds: 3000) }
        #expect(b.current == 0)
        sleptWait(&b, fd, microseconds: 500)     // under the maximum: twice the gap
        #expect(b.current >= 1000 && b.current <= 2000)
    }
}
