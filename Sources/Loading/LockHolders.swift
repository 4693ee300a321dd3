import Logging
import Postgres

/// Who holds what a batch waited for, said when a bounded lock wait runs out, and this
/// process's own orphaned backends ended (issue 22).
///
/// After a network partition the server may still have the session `load` gave up on: `active`
/// in a COPY, waiting in `ClientRead`, or `idle in transaction`, holding the batch's file locks
/// (`pg_advisory_xact_lock`) and the Kafka offset rows. The next session used to wait behind it
/// forever, silently. Now every lock wait of a batch is bounded by `lock_timeout`; when it runs
/// out the transaction rolls back, this names each backend in our way (pid, application_name,
/// state, since when), and the batch is retried a second later.
///
/// A backend is ended only when it is provably ours: its application_name carries this
/// process's run token (``Loader/run``) but is not one of the connections this process has
/// open, and it waits for its client (ClientRead, idle in transaction). Another pipeline's
/// backend, live or not, is never ended: the server's own keepalives
/// (``SessionStartup/serverTimeouts``) end a dead one within ~25 s.
struct LockHolders {
    /// SQLSTATE of a lock wait cut by `lock_timeout`.
    static let lockNotAvailable = "55P03"
    /// Long enough for another pipeline's batch to commit (seconds), short enough that a stuck
    /// wait is said within 30 s.
    static let timeout = "10s"

    /// `ingest-load <run>.`: the start of every application_name this process sets.
    let ownPrefix: String
    /// The application names of the connections this process has open.
    let live: Set<String>
    let logger: Logger

    /// Backends of this database in a transaction that hold one of the batch's file locks, or
    /// that are `load` sessions (the Kafka offset rows they may hold do not show in pg_locks).
    /// Advisory locks and rows are per database: another database's sessions are never in the way.
    static let query = """
        WITH keys AS (SELECT hashtextextended(n, 7263) AS k FROM unnest($1::text[]) AS n)
        SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''), coalesce(a.wait_event, ''),
               coalesce(to_char(a.xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), '?'),
               coalesce(extract(epoch FROM clock_timestamp() - a.xact_start)::bigint, 0),
               EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted
                       AND l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) IN (SELECT k FROM keys)),
               left(coalesce(a.query, ''), 40)
        FROM pg_stat_activity a
        WHERE a.pid <> pg_backend_pid() AND a.xact_start IS NOT NULL AND a.datname = current_database()
        ORDER BY a.xact_start
        """

    struct Holder {
        var pid: String
        var applicationName: String
        var state: String
        var waitEvent: String
        var since: String
        var seconds: Int
        var holdsFileLock: Bool
        var query: String
    }

    /// Logs who is in the way of a batch whose lock wait ran out (the transaction already rolled
    /// back), and ends those that are our own orphans. Best effort: a failure here only means
    /// the next attempt waits again.
    func report(_ conn: PostgresConnection, names: [String]) {
        let all: [Holder]
        do {
            all = try holders(conn, names: names)
        } catch {
            logger.warning("a lock wait ran out after \(Self.timeout) and who holds the lock could not be read (\(error)); retrying in 1 s")
            return
        }
        let inTheWay = all.filter { $0.holdsFileLock || $0.applicationName.hasPrefix("ingest-load ") }
        if inTheWay.isEmpty {
            logger.warning(
                "a lock wait ran out after \(Self.timeout); no session visible to this role holds the batch's locks (another role's may); retrying in 1 s"
            )
        }
        for holder in inTheWay {
            if isOurOrphan(holder) {
                end(conn, holder)
            } else {
                logger.warning("waiting for a lock held by \(describe(holder)); retrying in 1 s")
            }
        }
    }

    func holders(_ conn: PostgresConnection, names: [String]) throws -> [Holder] {
        let result = try conn.execute(Self.query, [arrayLiteral(names)])
        return (0..<result.rowCount).map { row in
            let value = { (column: Int) in result.value(row: row, column: column) ?? "" }
            return Holder(
                pid: value(0), applicationName: value(1), state: value(2), waitEvent: value(3), since: value(4),
                seconds: Int(value(5)) ?? 0, holdsFileLock: value(6) == "t", query: value(7))
        }
    }

    /// Ours (the run token), closed by us (not live), and waiting for us, its client.
    func isOurOrphan(_ holder: Holder) -> Bool {
        guard holder.applicationName.hasPrefix(ownPrefix), !live.contains(holder.applicationName) else { return false }
        return holder.state.hasPrefix("idle in transaction") || (holder.state == "active" && holder.waitEvent == "ClientRead")
    }

    private func end(_ conn: PostgresConnection, _ holder: Holder) {
        do {
            _ = try conn.execute("SELECT pg_terminate_backend($1::int)", [holder.pid])
            logger.warning(
                "ended \(describe(holder)): this load's own session from before its connection dropped, which the server still kept; retrying in 1 s"
            )
        } catch {
            logger.warning(
                "waiting for a lock held by \(describe(holder)), this load's own orphaned session, which could not be ended (\(error)); retrying in 1 s"
            )
        }
    }

    func describe(_ holder: Holder) -> String {
        let state = holder.state.isEmpty ? "state not visible" : holder.state
        var text = "pid \(holder.pid) (application_name \"\(holder.applicationName)\", \(state)"
        if !holder.waitEvent.isEmpty { text += " waiting in \(holder.waitEvent)" }
        // Only our own statements are quoted: another session's text may hold anything.
        if !holder.query.isEmpty && holder.state == "active" && holder.applicationName.hasPrefix("ingest-load ") {
            text += " in \"\(holder.query)…\""
        }
        text += ", in a transaction since \(holder.since), \(holder.seconds) s"
        if holder.holdsFileLock { text += "; holds a file lock of this batch" }
        return text + ")"
    }
}
