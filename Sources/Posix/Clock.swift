/// Seconds on the monotonic clock: for intervals and deadlines, never for dates.
@inline(__always)
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Milliseconds on the monotonic clock.
@inline(__always)
public func monotonicMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// Milliseconds since the Unix epoch on the wall clock (it may jump: for dates and leases
/// shared with other processes, not for intervals).
public func wallClockMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// The wall clock as seconds and nanoseconds since the Unix epoch.
public func wallClock() -> (seconds: Int64, nanoseconds: Int64) {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return (Int64(ts.tv_sec), Int64(ts.tv_nsec))
}

/// `850 ms`, `3 s`: a wait as the logs print it.
public func formatSeconds(_ s: Double) -> String {
    s < 1 ? "\(Int(s * 1000)) ms" : "\(Int(s)) s"
}
