import Ingest
import Logging
import Postgres
import Synchronization

/// The database sessions `load` commits in, each a connection and a thread for the batch in
/// flight, and the retry loops that keep them connected and their batches committing.
///
/// Threads, and who owns what (issue 22; the one statement of it):
/// - The reading thread (the caller of ``Loader/run(fd:)``) alone owns what input builds up,
///   ``LineIntake`` with its Kafka runs (``KafkaRuns``), and here `next` and `inUse`. A commit
///   thread never reads them.
/// - A commit thread owns its ``Session`` from its start (``start(_:in:)``) until the reading
///   thread joins it (``join(_:)``), and the ``Batch`` it was handed (moved in, never shared). A
///   batch in flight counts as held: a commit thread never gives it up for a signal, only for a
///   permanent error, or for a Kafka fence: then it hands the batch back whole (rolled back)
///   with the fence, and the reading thread, after the join, trims the lines and commits again
///   in that session (``commit(_:in:)``, on the reading thread) before anything else.
/// - While no thread runs in it, a session's connection is the reading thread's (start-up, the
///   catalog, a fenced batch committed again).
/// - A Kafka partition's lines commit in one session, the same while the process runs
///   (``KafkaRuns``): the reading thread cuts a session's next batch only after the one before
///   was joined and its fence resolved, so one partition's batches commit in order, at most one
///   while the next fills.
/// - ``BatchReporter`` guards what a committed batch changes in the process, from any thread:
///   the totals, the archiving and quarantine moves, the batch log lines.
/// - `liveNames` guards the application names of the connections now open, which any thread
///   reads to tell its own orphaned backends from live ones; `connectionsMade` is atomic.
/// - `config`, `run`, and `sql` once ``Loader/adoptCatalog()`` set it before the first line is
///   read: immutable while commit threads run; `config.metrics` locks itself.
final class CommitSessions {
    /// A commit session: its connection and its batch in flight.
    private final class Session {
        var connection: PostgresConnection?
        /// The connection's `application_name` (``SessionStartup/applicationName(tool:run:session:connection:pipeline:)``).
        var applicationName: String?
        var inFlight: CommitThread?
        /// The names of the files in the batch in flight: the reading thread's (set at start,
        /// cleared at the join).
        var inFlightNames: Set<String> = []
        /// Set by the commit thread when its batch was fenced; read and cleared by the reading
        /// thread after the join.
        var fenced: Batch.Fenced?
    }

    /// Batches commit in this many sessions at once, each on its own thread and connection,
    /// while the next one fills: PostgreSQL runs each session in a process of its own, so two
    /// COPYs use two cores (`psql \copy` of 400,000 rows here: 98,000-127,000 rows/s in one
    /// session, 179,000-188,000 in two). Files of different batches are independent; two
    /// versions of one name commit in stream order: the reading thread joins the session holding
    /// the earlier before it starts the later (``holdsAny(of:in:)``); across pipelines their
    /// advisory lock orders them.
    static let count = 2

    private let config: LoaderConfiguration
    private let logger: Logger
    private let reporter: BatchReporter
    /// The SQL and the contract's plan (see the ownership rule above).
    var sql: LoaderSQL
    /// This process's token in every `application_name` it sets, so that a backend found holding
    /// a lock we wait for can be proven ours (see ``LockHolders``).
    let run = String(randomToken().prefix(8))
    /// Counts the connections made, for their application names.
    private let connectionsMade = Atomic<Int>(0)
    /// The application names of the connections this process has open now.
    private let liveNames = Mutex<Set<String>>([])
    /// An array never mutated, of objects each touched by one thread at a time.
    private let sessions = (0..<CommitSessions.count).map { _ in Session() }
    /// The session the next batch of files goes to.
    private(set) var next = 0
    /// Sessions used: `count`, or 1 once the server refused a second connection (a role's
    /// CONNECTION LIMIT, max_connections): one session is slower, not wrong. It falls only before
    /// the second session ever committed (``isUsable(_:)`` opens it once, at start-up).
    private(set) var inUse = CommitSessions.count

    init(config: LoaderConfiguration, sql: LoaderSQL, reporter: BatchReporter, logger: Logger) {
        self.config = config
        self.sql = sql
        self.reporter = reporter
        self.logger = logger
    }

    var indices: Range<Int> { sessions.indices }

    /// True while `session`'s commit thread is still at work (a join would wait).
    func isCommitting(_ session: Int) -> Bool { sessions[session].inFlight.map { !$0.isFinished } ?? false }

    /// True when `session`'s batch is done but not yet joined (a join would not wait).
    func hasFinished(_ session: Int) -> Bool { sessions[session].inFlight.map { $0.isFinished } ?? false }

    /// True when `session`'s batch in flight holds a file of one of `names`: a later version of
    /// a name waits for it, so that versions commit in the order the stream gave them.
    func holdsAny(of names: Set<String>, in session: Int) -> Bool {
        sessions[session].inFlight != nil && !sessions[session].inFlightNames.isDisjoint(with: names)
    }

    /// True while any session has a batch not yet joined.
    var hasInFlight: Bool { sessions.contains { $0.inFlight != nil } }

    /// Whether `session` can commit: true for session 0 and a connected one; an extra session is
    /// connected here, once, without retrying.
    func isUsable(_ session: Int) -> Bool { session == 0 || sessions[session].connection != nil || openExtraSession(session) }

    /// Starts committing `batch` on a new thread of `session`, which must have been joined; the
    /// next batch goes to the next session.
    func start(_ batch: Batch, in session: Int) throws {
        next = (session + 1) % inUse
        let owner = sessions[session]
        owner.inFlightNames = Set(batch.files.lazy.compactMap(\.name))
        owner.inFlight = try CommitThread { [self] in
            owner.fenced = try commit(batch, in: session).map { Batch.Fenced(fence: $0, batch: batch) }
        }
    }

    /// Waits for the batch in flight in `session`, if any; rethrows its permanent error, and
    /// returns it when it came back fenced.
    func join(_ session: Int) throws -> Batch.Fenced? {
        guard let thread = sessions[session].inFlight else { return nil }
        sessions[session].inFlight = nil
        sessions[session].inFlightNames = []
        try thread.wait()
        defer { sessions[session].fenced = nil }
        return sessions[session].fenced
    }

    /// Commits `batch`, retrying through connection loss; its rows stay in memory (or the spool)
    /// until the commit succeeded. Runs on the session's commit thread, which alone uses its
    /// connection meanwhile (or on the reading thread, recommitting a fenced batch after the
    /// join). Returns the fence when another commit moved one of its Kafka partitions: the
    /// transaction rolled back, and only the reader may trim the lines.
    func commit(_ batch: Batch, in session: Int) throws -> KafkaFence? {
        let started = monotonicSeconds()
        var attempt = 0
        var outcome: BatchOutcome
        while true {
            do {
                let conn = try connectedConnection(session: session, holding: true)
                outcome = try BatchCommit(
                    sql: sql, connection: conn, files: batch.files, token: batch.token, deadLetterStamp: batch.deadLetterStamp,
                    config: config, logger: logger, holders: lockHolders
                ).run()
                break
            } catch let error as PostgresError
                where error.sqlstate == "23505" && error.description.contains(config.checkpointTable) && attempt < 3
            {
                // Another pipeline committed one of these files first (a loader without the name
                // locks): the next attempt sees its checkpoint and skips the file.
                attempt += 1
                logger.warning("a file of this batch was committed by another pipeline meanwhile; retrying the batch")
            } catch let error as PostgresError where error.sqlstate == LockHolders.lockNotAvailable {
                // A bounded lock wait ran out; BatchCommit said who holds the lock (and ended it
                // when it was our own orphan). Not a failure of the server: no attempt counted.
                sleep(seconds: 1)
            } catch let fence as KafkaFence {
                return fence
            } catch let error as PostgresError where error.category == .connection || error.category == .retry {
                attempt += 1
                config.metrics.databaseRetry()
                drop(session)
                if let limit = config.maxRetries, attempt > limit { throw LoaderError.gaveUp(config.endpoint, error) }
                let wait = Backoff.database.delay(attempt: attempt)
                logger.warning("\(retryNote(error, endpoint: config.endpoint, connecting: false, wait: wait, attempt: attempt))")
                sleep(seconds: wait)
            }
        }
        let committedAt = UTCTimestamp.now()
        let elapsed = monotonicSeconds() - started
        reporter.committed(outcome, elapsed: elapsed, committedAt: committedAt)
        return nil
    }

    /// Connects an extra commit session once, without retrying; false (and one session from
    /// now on) when the server refuses: the batches then commit in session 0, which retries.
    private func openExtraSession(_ session: Int) -> Bool {
        do {
            let conn = try openConnection(session: session)
            do {
                try sql.checkTables(conn)
            } catch {
                drop(session)
                throw error
            }
            return true
        } catch {
            inUse = 1
            next = 0
            logger.warning(
                "\(config.endpoint): a second database session could not be opened (\(error)); committing in one session from now on"
            )
            return false
        }
    }

    /// A live connection for `session`, made with retries and backoff while the server is
    /// unreachable. `holding`: the caller holds rows (a batch to commit), so a stop signal does
    /// not end the wait; only the reading thread at start-up, holding nothing, passes false.
    func connectedConnection(session: Int = 0, holding: Bool) throws -> PostgresConnection {
        if let connection = sessions[session].connection, !connection.isConnectionBad { return connection }
        drop(session)
        var attempt = 0
        while true {
            do {
                let conn = try openConnection(session: session)
                do {
                    try sql.checkTables(conn)
                } catch let error as PostgresError where error.category != .connection {
                    // The endpoint may not say which database libpq chose (PGDATABASE unset).
                    drop(session)
                    throw LoaderError.permanent("\(config.endpoint) (database \(conn.databaseName))", error)
                }
                if attempt > 0 { logger.info("connected to \(config.endpoint) after \(attempt) failed attempts") }
                config.metrics.databaseConnected()
                return conn
            } catch let error as PostgresError where error.category == .connection || error.category == .retry {
                drop(session)
                attempt += 1
                config.metrics.databaseRetry()
                if let limit = config.maxRetries, attempt > limit { throw LoaderError.gaveUp(config.endpoint, error) }
                let wait = Backoff.database.delay(attempt: attempt)
                logger.warning("\(retryNote(error, endpoint: config.endpoint, connecting: true, wait: wait, attempt: attempt))")
                if attempt == 1, let hint = config.unreachableHint { logger.warning("hint: \(hint)") }
                // A stop asked for while nothing is held ends the wait at once: nothing to lose.
                if !holding && Interrupts.received == 0 { Interrupts.sleep(milliseconds: Int(wait * 1000)) } else { sleep(seconds: wait) }
                if !holding && Interrupts.received > 0 { throw LoaderError.interrupted(config.endpoint) }
            } catch let error as PostgresError {
                drop(session)
                throw LoaderError.permanent(config.endpoint, error)
            }
        }
    }

    /// Connects `session` once, with the server-side timeouts and an application name of its own
    /// (``SessionStartup``), and records the name as live before the server can see it.
    private func openConnection(session: Int) throws -> PostgresConnection {
        let name = SessionStartup.applicationName(
            tool: "load", run: run, session: session, connection: connectionsMade.add(1, ordering: .relaxed).newValue,
            pipeline: config.pipeline)
        liveNames.withLock { _ = $0.insert(name) }
        do {
            let startup = try SessionStartup.parameters(conninfo: config.conninfo, applicationName: name)
            let conn = try PostgresConnection(conninfo: config.conninfo, startup: startup)
            sessions[session].connection = conn
            sessions[session].applicationName = name
            return conn
        } catch {
            liveNames.withLock { _ = $0.remove(name) }
            throw error
        }
    }

    /// Closes `session`'s connection; its backend, should the server not have noticed, is from
    /// now on an orphan of ours that ``LockHolders`` may end.
    private func drop(_ session: Int) {
        sessions[session].connection = nil
        if let name = sessions[session].applicationName { liveNames.withLock { _ = $0.remove(name) } }
        sessions[session].applicationName = nil
    }

    /// Who may be ended when found holding a lock we wait for: this process's closed sessions,
    /// judged against the connections open when the lock wait runs out, not when the batch began.
    private var lockHolders: LockHolders {
        LockHolders(ownPrefix: "ingest-load \(run).", isLive: { [self] name in liveNames.withLock { $0.contains(name) } }, logger: logger)
    }
}
