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

@Test func sleepsWithGapsJustOverTheMaximumEndInAProbeOfTheWholeMaximum() {
    var fds: [CInt] = [-1, -1]
    #expect(pipe(&fds) == 0)
    defer { close(fds[0]); close(fds[1]) }
    // Gaps of 1.5 maximums, as a halted vCPU's wake-up makes of a short gap:
    // seven leave it at 0, the eighth sets it to the maximum for one probe.
    var b = exhausted(maximum: 2000, fds[0])
    for _ in 0..<7 { sleptWait(&b, fds[0], microseconds: 3000) }
    #expect(b.current == 0)
    sleptWait(&b, fds[0], microseconds: 3000)
    #expect(b.current == 2000)
}

@Test func aLongGapStartsTheCountAgainAndAShortOneSetsTheBudgetAtOnce() {
    var fds: [CInt] = [-1, -1]
    #expect(pipe(&fds) == 0)
    defer { close(fds[0]); close(fds[1]) }
    var b = exhausted(maximum: 2000, fds[0])
    for _ in 0..<6 { sleptWait(&b, fds[0], microseconds: 3000) }
    sleptWait(&b, fds[0], microseconds: 12000)   // over probeSpan maximums: an idle stream
    for _ in 0..<7 { sleptWait(&b, fds[0], microseconds: 3000) }
    #expect(b.current == 0)
    sleptWait(&b, fds[0], microseconds: 500)     // under the maximum: twice the gap
    #expect(b.current >= 1000 && b.current <= 2000)
}
