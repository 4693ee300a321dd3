import Ingest
import Logging
import Postgres

/// What one committed batch did, per file.
struct BatchOutcome {
    struct File {
        var fingerprint: FileFingerprint?
        var skipped: Bool
        var loaded: Int
        var rejected: Int
        var seen: UTCTimestamp?
        /// Why the file was refused as a whole by the reject threshold (now or, when skipped, earlier); nil: not refused.
        var quarantined: String?
        /// Not loaded: a changed version of a committed file, to be moved to quarantine.
        var quarantine: QuarantinedFile? = nil
    }
    var files: [File] = []
    /// Dead letters committed, by reason text (for the metrics).
    var rejectReasons: [String: Int] = [:]
    var loaded: Int { files.reduce(0) { $0 + $1.loaded } }
    var rejected: Int { files.reduce(0) { $0 + $1.rejected } }
}

/// A record the server (or the key probe) refused, made a reject of its file.
struct RefusedRow {
    var line: [UInt8]
    var reason: RejectReason
}

/// One attempt at committing a batch: a single transaction holding the rows, the rejects,
/// the dead-letter rows and the checkpoints. Dead-letter files are written before COMMIT.
///
/// The transaction's four phases, each in a file of its own:
/// 1. which files load (`BatchCommit+Files.swift`): replays skipped, changed versions quarantined;
/// 2. the rows (`BatchCommit+Rows.swift`): one binary COPY, and only when the server refuses a
///    row, `Isolation` (`Isolation.swift`) finds it, in a second transaction (the first is
///    rolled back: its COPY has no savepoint, two round trips fewer per batch);
/// 3. the checkpoints (`BatchCommit+Checkpoints.swift`);
/// 4. the dead letters, files and table rows (`DeadLetters.swift`).
///
/// Runs on the thread that commits the batch (a commit thread, or the reading thread for Kafka
/// runs), which alone uses `connection` meanwhile; everything else here is immutable.
struct BatchCommit {
    let sql: LoaderSQL
    let connection: PostgresConnection
    let files: [PendingFile]
    /// Identifies a batch of records without provenance, so a retry after an ambiguous
    /// COMMIT (connection lost while committing) can tell whether it already happened.
    let token: String
    /// When the batch was first tried (`20260130T100132Z`), in its dead-letter file name: fixed
    /// across retries, so a retried batch rewrites its file instead of adding a second one.
    let deadLetterStamp: String
    let config: LoaderConfiguration
    let logger: Logger
    /// Said, and our orphans ended, when a lock wait runs out.
    let holders: LockHolders

    func run() throws -> BatchOutcome {
        let conn = connection
        let inFlight = config.metrics.commitStarted(rows: files.reduce(0) { $0 + $1.rowCount })
        defer { config.metrics.commitEnded(inFlight) }
        do {
            do {
                return try transaction(conn, inFlight: inFlight, afterRefusal: false)
            } catch let refusal as RowsRefused {
                // The batch's COPY ran without a savepoint (two round trips fewer per batch), so
                // the refusal aborted the transaction: a new one, deciding the files again under
                // their locks, isolates the refused rows.
                _ = try conn.execute("ROLLBACK")
                logger.info("the server refused a row (\(refusal.error.sqlstate ?? "?")); isolating it")
                return try transaction(conn, inFlight: inFlight, afterRefusal: true)
            }
        } catch let error as PostgresError where error.sqlstate == LockHolders.lockNotAvailable {
            _ = try? conn.execute("ROLLBACK")
            holders.report(conn, names: files.compactMap { $0.fingerprint?.name })
            throw error
        } catch {
            if !conn.isConnectionBad { _ = try? conn.execute("ROLLBACK") }
            throw error
        }
    }

    /// One transaction of the batch, to COMMIT. `afterRefusal`: an earlier one's COPY was
    /// refused, so the rows go through `Isolation` at once.
    private func transaction(_ conn: PostgresConnection, inFlight: Int, afterRefusal: Bool) throws -> BatchOutcome {
        // A Kafka batch's offsets come first, in the transaction; a batch of files opens it with
        // its name locks and look-up, in one round trip (a small file's commit is a handful).
        let hasKafka = files.contains { $0.kafka != nil }
        if hasKafka {
            try conn.executeScript("BEGIN; \(LoaderSQL.boundLockWaits)")
            try storeKafkaOffsets(conn)
        }
        let decisions = try decideFiles(conn, opening: !hasKafka)
        let rows = try copyRows(conn, exclude: decisions.exclude, inFlight: inFlight, afterRefusal: afterRefusal)
        var outcome = BatchOutcome()
        let checkpointID = try insertCheckpoints(conn, decisions: decisions, rows: rows, outcome: &outcome)
        outcome.rejectReasons = try writeDeadLetters(
            conn, skip: decisions.exclude, refused: rows.refused, checkpointID: checkpointID)
        _ = try conn.execute("COMMIT")
        return outcome
    }

    /// The batch's source files, for log lines: `a.csv`, `a.csv and 3 more`.
    var fileNames: String {
        let names = files.compactMap { $0.name ?? $0.kafka?.checkpointKey }
        guard let first = names.first else { return "records without a file" }
        return names.count == 1 ? first : "\(first) and \(names.count - 1) more"
    }
}
