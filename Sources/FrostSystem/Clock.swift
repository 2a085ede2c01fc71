#if canImport(Glibc)
import Glibc
#endif

/// Seconds on the monotonic clock (for intervals; not a time of day).
public func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// The monotonic clock in microseconds (systemd's `MONOTONIC_USEC`).
public func monotonicMicroseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
}

/// The CLOCK_REALTIME time `seconds` from now, for `Monitor.wait(until:)`.
public func deadline(afterSeconds seconds: Double) -> timespec {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    let total = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9 + seconds
    return timespec(tv_sec: Int(total), tv_nsec: Int((total - total.rounded(.down)) * 1e9))
}
