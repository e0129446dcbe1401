import CShim

/// Per-syscall counts of forwarded and local calls, for `--stats`. Relaxed
/// atomic adds into a fixed array: no lock, no allocation.
final class Stats: @unchecked Sendable {
    // Only touched through the atomic helpers below.
    private let counters: UnsafeMutablePointer<UInt64>
    private let rows: Int

    init(rows: Int) {
        self.rows = rows
        counters = .allocate(capacity: rows * 2)
        counters.initialize(repeating: 0, count: rows * 2)
    }
    deinit { counters.deallocate() }

    @inline(__always)
    func count(row: Int, forwarded: Bool) {
        cshim_counter_add(counters + row * 2 + (forwarded ? 0 : 1), 1)
    }

    func forwardedCount(row: Int) -> UInt64 { cshim_counter_load(counters + row * 2) }
    func localCount(row: Int) -> UInt64 { cshim_counter_load(counters + row * 2 + 1) }
}
