import Postgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The warning `load` logs before it retries: what happened to the server, in words an operator
/// can act on, and what `load` does next.
///
/// A silent server (a dropped route, a dead host, a firewall) shows as a libpq timeout, bounded by
/// ``ConnectionSettings/deadServerDefaults``; the server's own disk-full and out-of-memory errors
/// come back with SQLSTATE 53100 and 53200.
func retryNote(_ error: PostgresError, endpoint: String, connecting: Bool, wait: Double, attempt: Int) -> String {
    let next = "retrying in \(formatSeconds(wait)) (attempt \(attempt))"
    let batch = connecting ? "" : "; the batch is kept and commits once (its checkpoints decide)"
    if error.sqlstate == nil && isSilence(error.message) {
        return "\(endpoint) stopped answering (\(error.description)): connection dropped; reconnecting, \(next)\(batch)"
    }
    switch error.sqlstate {
    case "53100":
        return "\(endpoint): the server's disk is full (\(error.description)); \(next)\(batch)"
    case "53200":
        return "\(endpoint): the server is out of memory (\(error.description)); \(next)\(batch)"
    default:
        return connecting
            ? "cannot reach \(endpoint): \(error.description); \(next)"
            : "commit failed, \(endpoint): \(error.description); \(next)\(batch)"
    }
}

/// libpq's and the kernel's words for "no answer in time" (connect_timeout, tcp_user_timeout,
/// keepalives).
func isSilence(_ message: String) -> Bool {
    let lowered = message.lowercased()
    return lowered.contains("timed out") || lowered.contains("timeout expired")
}

/// Seconds to wait before retry `attempt` (1, 2, …): doubling from 0.5 s, at most 30 s.
func backoff(_ attempt: Int) -> Double {
    min(30, 0.25 * Double(1 << min(attempt, 8)))
}

func formatSeconds(_ s: Double) -> String {
    s < 1 ? "\(Int(s * 1000)) ms" : "\(Int(s)) s"
}

/// Sleeps `s` seconds whatever signals arrive (a batch is held: a stop does not cut the wait).
func sleepSeconds(_ s: Double) {
    var request = timespec(tv_sec: Int(s), tv_nsec: Int((s - Double(Int(s))) * 1e9))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}
