import Postgres
import Testing

@testable import Loading

/// The warning before a retry names what happened in words an operator can act on; a
/// connection lost mid-batch is said as lost (and maybe silent), whichever words libpq chose.
@Suite struct RetryNoteTests {
    static let endpoint = "host=db port=5432 dbname=ecommerce user=loader"

    @Test func aTimeoutIsASilentServer() {
        let error = PostgresError(message: "could not receive data from server: Connection timed out", connectionLost: true)
        let note = retryNote(error, endpoint: Self.endpoint, connecting: false, wait: 0.5, attempt: 1)
        #expect(note.hasPrefix("\(Self.endpoint) stopped answering (could not receive data from server: Connection timed out)"))
        #expect(note.hasSuffix("retrying in 500 ms (attempt 1); the batch is kept and commits once (its checkpoints decide)"))
    }

    /// libpq's words when the kernel's timeout reached its write first (PartitionTests in CI).
    @Test func aConnectionClosedMidBatchIsSaidAsLost() {
        let error = PostgresError(
            message: "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally",
            connectionLost: true)
        let note = retryNote(error, endpoint: Self.endpoint, connecting: false, wait: 1, attempt: 2)
        #expect(note.hasPrefix("lost the connection to \(Self.endpoint) (server closed the connection unexpectedly This probably"))
        #expect(note.contains("stopped answering; reconnecting, retrying in 1 s (attempt 2); the batch is kept"))
        #expect(!note.contains("commit failed"))
    }

    @Test func theServersOwnErrorsKeepTheirWords() {
        let shutdown = PostgresError(
            sqlstate: "57P01", severity: "FATAL", message: "terminating connection due to administrator command", connectionLost: true)
        #expect(
            retryNote(shutdown, endpoint: Self.endpoint, connecting: false, wait: 1, attempt: 1).hasPrefix(
                "commit failed, \(Self.endpoint): FATAL 57P01: terminating connection"))
        let full = PostgresError(sqlstate: "53100", severity: "ERROR", message: "could not extend file")
        #expect(retryNote(full, endpoint: Self.endpoint, connecting: false, wait: 1, attempt: 1).contains("the server's disk is full"))
        let refused = PostgresError(message: "connection to server at \"db\" failed: Connection refused", connectionLost: true)
        #expect(
            retryNote(refused, endpoint: Self.endpoint, connecting: true, wait: 1, attempt: 3)
                == "cannot reach \(Self.endpoint): connection to server at \"db\" failed: Connection refused; retrying in 1 s (attempt 3)")
    }
}
