import Ingest
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
///
/// A connection lost mid-batch without a timeout's words is said as lost, not as a failed
/// commit: libpq words the same kernel timeout either way. When `tcp_user_timeout` ends a
/// COPY, whichever call meets the socket's error first keeps it: a read says "Connection timed
/// out", but a write's message is dropped and the read after it says "server closed the
/// connection unexpectedly" (seen in a CI run of PartitionTests, server→client).
func retryNote(_ error: PostgresError, endpoint: String, connecting: Bool, wait: Double, attempt: Int) -> String {
    let next = "retrying in \(formatSeconds(wait)) (attempt \(attempt))"
    let batch = connecting ? "" : "; the batch is kept and commits once (its checkpoints decide)"
    if error.sqlstate == nil && isSilence(error.message) {
        return "\(endpoint) stopped answering (\(error.description)): connection dropped; reconnecting, \(next)\(batch)"
    }
    if error.sqlstate == nil && error.connectionLost && !connecting {
        let lost = "lost the connection to \(endpoint) (\(error.description))"
        return "\(lost): the server closed it or stopped answering; reconnecting, \(next)\(batch)"
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
