/// Sleeps for `seconds`, through signals (EINTR resumes the remaining time).
///
/// With `stop`, the sleep is cut into slices of at most `slice` seconds and asks `stop` after
/// each: it returns false as soon as `stop` says so, true when the whole time passed. A wait that
/// must honour Ctrl+C passes the stage's stop test here rather than sleeping blind.
@discardableResult
public func sleep(seconds: Double, slice: Double = 0.1, stop: (() -> Bool)? = nil) -> Bool {
    guard seconds > 0 else { return !(stop?() ?? false) }
    guard let stop else {
        nanosleepFully(seconds)
        return true
    }
    let deadline = monotonicSeconds() + seconds
    while true {
        if stop() { return false }
        let left = deadline - monotonicSeconds()
        if left <= 0 { return true }
        nanosleepFully(min(left, slice))
    }
}

private func nanosleepFully(_ seconds: Double) {
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}
