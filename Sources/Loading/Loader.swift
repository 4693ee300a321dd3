import Ingest
import Logging
import Postgres
import Synchronization
import Telemetry

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What `load` does with a source file once its rows are committed.
public enum AfterCommit: Sendable {
    /// Move it into this folder (the default: `data/processed`).
    case archive(ContainedFolder)
    case delete
    /// Leave it, and record it in the folder's journal so `watch` skips it on restart.
    case keep
}

/// Everything `load` needs to know, with the defaults a user gets.
public struct LoaderConfiguration: Sendable {
    public var conninfo: String
    /// Where libpq connects, for logs (no password).
    public var endpoint: String
    /// What the table accepts (docs/contracts.md); `table` and `badRecordsTable` are its
    /// tables unless set otherwise (`load --table`).
    public var contract: Contract = .ecommerceEvents
    public var table: String = "public.ecommerce_events"
    public var checkpointTable: String = "ingest_checkpoints"
    public var badRecordsTable: String = "public.ecommerce_bad_records"
    /// Each Kafka partition's next offset to load, stored with the rows (see docs/kafka.md).
    public var kafkaOffsetsTable: String = "ingest_kafka_offsets"
    /// Commit once this many rows of complete files are waiting.
    public var batchRows: Int = 10_000
    /// Commit once the complete files waiting hold this many bytes in memory (many small
    /// files: their spools stay in memory), so load's resident memory stays flat.
    public var batchMemory: Int = 2 << 20
    /// Commit at the latest this long after the oldest waiting row arrived.
    public var maxDelay: Double = 1.0
    public var incoming: ContainedFolder = ContainedFolder("data/incoming")
    public var badRecords: ContainedFolder = ContainedFolder("data/bad_records")
    public var afterCommit: AfterCommit = .archive(ContainedFolder("data/processed"))
    /// Give up after this many failed attempts to reach the server (nil: never give up).
    public var maxRetries: Int? = nil
    /// Said with the first failed attempt to reach the server (e.g. where the embedded one is).
    public var unreachableHint: String? = nil
    /// A file over it commits none of its rows and moves to `quarantine`.
    public var rejectThreshold = RejectThreshold()
    public var quarantine = Quarantine(ContainedFolder("data/quarantine"))
    public var spoolLimit: Int = 8 << 20
    public var spoolDirectory: String = Spool.defaultDirectory
    /// Counters and gauges for `--metrics-listen` (always kept; cheap).
    public var metrics = LoadMetrics()
    /// Recorded in each checkpoint: which pipeline loaded the file (`--name`, default host:pid).
    public var pipeline: String = defaultPipelineName()

    public init(conninfo: String, endpoint: String) {
        self.conninfo = conninfo
        self.endpoint = endpoint
    }
}

/// Totals over a run, for the final log line and tests.
public struct LoaderTotals: Sendable {
    public var batches = 0
    public var filesCommitted = 0
    public var filesSkipped = 0
    /// Files refused as a whole (reject threshold, or a changed version of a committed file).
    public var filesQuarantined = 0
    public var rowsLoaded = 0
    public var rowsRejected = 0
    public var incompleteFiles = 0
    /// Files the reader abandoned mid-way (changed while being read).
    public var abandonedFiles = 0
}

/// The sink of the pipeline: reads the line protocol, commits complete files to PostgreSQL
/// with COPY, exactly once, and keeps every reject in the dead letters.
///
/// Exactly once: a file's rows, its rejects and its checkpoint row (name, size, SHA-256) are
/// written in one transaction, and a file whose checkpoint exists is skipped. Rows of a file
/// whose end marker never arrived (an upstream crash) are never committed: the file is still
/// in the incoming folder and is read again after a restart.
///
/// Threads, and who owns what (issue 22):
/// - The reading thread (the caller of ``run(fd:)``) alone owns what input builds up: `open`,
///   `ready`, `loose`, `readyRows`, `readyResident`, `oldestReadyAt`, `decoder`, `lastFile`,
///   `warnedKinds`, `nextSession`, `sessionsInUse`, and the Kafka runs (`kafka`). A commit
///   thread never reads them.
/// - A commit thread owns its ``Session`` from its start until the reading thread joins it
///   (``awaitCommit(session:)``), and the batch it was handed (moved in, never shared). A batch
///   in flight counts as held: a commit thread never gives it up for a signal, only for a
///   permanent error, or for a Kafka fence: then it hands the batch back whole (rolled back)
///   with the fence, and the reading thread, after the join, trims the lines and commits again.
/// - Kafka lines: the reading thread cuts each partition's held lines into the batch
///   (``KafkaRuns/cut()``, the run going on from the batch's end) and commits them in session 0
///   only, so one partition's next batch starts only after the one before was joined and any
///   fence resolved: at most one Kafka batch commits while the next one fills.
/// - `reporting` guards what a committed batch changes here, from any thread: the totals, the
///   archiving and quarantine moves, the batch log lines.
/// - `liveNames` guards the application names of the connections now open, which any thread
///   reads to tell its own orphaned backends from live ones.
/// - `config`, `sql`, `claims`, `run`: immutable after init; `config.metrics` locks itself.
public final class Loader {
    let config: LoaderConfiguration
    let logger: Logger
    /// A commit session: its connection (used by its commit thread while one runs, else by the
    /// reading thread) and its batch in flight.
    private final class Session {
        var connection: PostgresConnection?
        /// The connection's `application_name` (``SessionStartup/applicationName(tool:run:session:connection:pipeline:)``).
        var applicationName: String?
        var inFlight: CommitThread?
        /// Set by the commit thread when its batch was fenced (rolled back, handed back whole);
        /// read and cleared by the reading thread after the join.
        var fenced: (fence: KafkaFence, batch: Batch)?
    }
    /// This process's token in every `application_name` it sets, so that a backend found holding
    /// a lock we wait for can be proven ours (see ``LockHolders``).
    let run = String(randomToken().prefix(8))
    /// Counts the connections made, for their application names.
    private let connectionsMade = Atomic<Int>(0)
    /// The application names of the connections this process has open now.
    private let liveNames = Mutex<Set<String>>([])
    /// Session 0 is also the reading thread's (start-up, Kafka). An array never mutated, of
    /// objects each touched by one thread at a time.
    private let sessions = (0..<Loader.commitSessions).map { _ in Session() }
    private var open: [String: PendingFile] = [:]
    private var ready: [PendingFile] = []
    private var loose: PendingFile?
    private var readyRows = 0
    /// Bytes the complete files waiting hold in memory.
    private var readyResident = 0
    private var oldestReadyAt: Double?
    private var decoder = LineDecoder()
    /// Batches commit in this many sessions at once, each on its own thread and connection,
    /// while the next one fills: PostgreSQL runs each session in a process of its own, so two
    /// COPYs use two cores (`psql \copy` of 400,000 rows here: 98,000-127,000 rows/s in one
    /// session, 179,000-188,000 in two). Files of different batches are independent; two
    /// versions of one name wait for each other on their advisory lock, as across pipelines.
    static let commitSessions = 2
    private var nextSession = 0
    /// Sessions used: `commitSessions`, or 1 once the server refused a second connection (a
    /// role's CONNECTION LIMIT, max_connections): one session is slower, not wrong.
    private var sessionsInUse = Loader.commitSessions
    /// What a committed batch changes here (totals, archiving, logs), across sessions.
    private let reporting = Mutex(LoaderTotals())
    private var warnedKinds: Set<String> = []
    /// The file of the last record line, and that line's `file` member as raw JSON text.
    private var lastFile: PendingFile?
    private var lastFileSpan: [UInt8] = []
    private var rowsNotCounted = 0
    private var linesSinceClock = 0
    /// Totals so far; written under `reporting` by whichever thread commits or abandons.
    public var totals: LoaderTotals { reporting.withLock { $0 } }
    /// The SQL and the contract's plan: made from the contract at init, then again from the
    /// table's catalog at start-up (`adoptCatalog`), on the reading thread before any line is
    /// read and so before any commit thread reads them.
    var sql: LoaderSQL
    let tuples: TupleEncoder
    /// Claims of pipelines sharing the incoming folder (`watch --shared`): released once a file
    /// has left the folder, and this pipeline marked alive while it works.
    private let claims: FileClaims
    private var lastBeat: Double = 0
    private let kafka: KafkaRuns

    public init(config: LoaderConfiguration, logger: Logger) {
        self.config = config
        self.logger = logger
        let plan = LoadPlan(contract: config.contract, table: TableName(config.table))
        self.sql = LoaderSQL(config: config, plan: plan)
        self.tuples = TupleEncoder(plan: plan)
        self.claims = FileClaims(folder: config.incoming.path, pipeline: config.pipeline)
        self.kafka = KafkaRuns(
            spoolLimit: config.spoolLimit, spoolDirectory: config.spoolDirectory, tuples: tuples, logger: logger)
    }

    /// Marks the pipeline alive every second or so, when the folder is shared.
    private func beat() {
        let now = monotonicSeconds()
        guard now - lastBeat >= 1 else { return }
        lastBeat = now
        if claims.isInUse { try? claims.beat() }
    }

    // MARK: - Reading

    /// Reads `fd` to end of input, committing as it goes. Throws on permanent errors only.
    public func run(fd: Int32) throws {
        try adoptCatalog()
        let reader = LineReader(fd: fd)
        while true {
            // Kafka lines arrive as one continuous stream through a 64 KiB pipe: an empty pipe for
            // an instant is back-pressure, not quiet; waiting briefly keeps batches large.
            if hasCommittable && !reader.hasBufferedLine && !reader.inputReady(timeoutMilliseconds: kafka.hasLines ? 50 : 0) {
                // A quiet stream: commit now rather than hold rows back. Kafka lines while the
                // batch before them still commits wait for it here, input still read, rather
                // than in the join: what arrives meanwhile joins them.
                if kafka.hasLines, let thread = sessions[0].inFlight, !thread.isFinished { continue }
                try commit()
            }
            guard let item = try reader.next() else { break }
            // The clock is read every 64 lines, or when no further line is buffered (the
            // stream may pause next): once per line it was ~2 % of load's time per row.
            linesSinceClock += 1
            let checkClock = linesSinceClock >= 64 || !reader.hasBufferedLine
            if checkClock {
                linesSinceClock = 0
                beat()
            }
            switch item {
            case .line(let bytes) where isTruncatedTail(bytes, reader: reader):
                logger.warning(
                    "stdin:\(reader.lineNumber): input ended in the middle of a line (\(bytes.count) bytes dropped): the upstream stage stopped mid-write"
                )
            case .line(let bytes):
                try accept(bytes, lineNumber: reader.lineNumber)
            case .overlong(let count):
                var reject: [UInt8] = []
                let note = Array("(\(count) bytes, not kept)".utf8)
                note.withUnsafeBytes {
                    LineEncoder.appendMalformedLine(
                        $0, lineNumber: reader.lineNumber, problem: "line longer than \(reader.maxLineLength) bytes", into: &reject)
                }
                try addLoose(reject.dropLast())
            }
            // The rows-read counter is live: brought up to date whenever the stream may pause.
            if checkClock && rowsNotCounted > 0 { countRowsRead() }
            if readyRows >= config.batchRows || readyResident >= config.batchMemory {
                try commit()
            } else if checkClock, let oldest = oldestReadyAt, monotonicSeconds() - oldest >= config.maxDelay {
                try commit()
            }
        }
        countRowsRead()
        while hasCommittable { try commit() }
        try awaitCommit()
        for (name, file) in open {
            reporting.withLock { $0.incompleteFiles += 1 }
            logger.warning(
                "\(name): input ended before its end marker; \(file.rowCount) rows not committed (the file is loaded when it is read again)"
            )
        }
        config.metrics.filesFinished(Array(open.keys))
        open.removeAll()
    }

    private var hasCommittable: Bool { !ready.isEmpty || loose != nil || kafka.hasLines }

    private func accept(_ bytes: UnsafeRawBufferPointer, lineNumber: Int) throws {
        let line: ProtocolLine
        do {
            line = try decoder.decode(bytes)
        } catch {
            var reject: [UInt8] = []
            LineEncoder.appendMalformedLine(bytes, lineNumber: lineNumber, problem: error.description, into: &reject)
            logger.warning("stdin:\(lineNumber): malformed JSON (\(error.description)); kept as a reject")
            try addLoose(reject.dropLast())
            return
        }
        // Lines from `consume` (topic, partition, offset) are held per partition.
        if let rows = try kafka.accept(line, bytes) {
            readyRows += rows
            if rows > 0 && oldestReadyAt == nil { oldestReadyAt = monotonicSeconds() }
            return
        }
        switch line.kind {
        case .record, .reject:
            let isReject = line.kind == .reject
            rowsNotCounted += 1
            if rowsNotCounted >= 4096 { countRowsRead() }
            if let m = line.member(.file), m.kind != .null {
                try openFile(line, fileMember: m).add(line, isReject: isReject)
            } else {
                let file = looseFile()
                try file.add(line, isReject: isReject)
                readyRows += 1
                if oldestReadyAt == nil { oldestReadyAt = file.firstLineAt }
            }
        case .endOfFile:
            lastFile = nil
            countRowsRead()
            guard var marker = FileMarker(line) else {
                logger.warning("stdin:\(lineNumber): end marker without file, rows, bytes and sha256; ignored")
                return
            }
            marker.file = marker.file.replacingNUL()
            let file =
                open.removeValue(forKey: line.file ?? marker.file)
                ?? PendingFile(name: marker.file, spoolLimit: config.spoolLimit, spoolDirectory: config.spoolDirectory, tuples: tuples)
            file.marker = marker
            // The file is complete and its reject count known: decide here, apply at commit.
            file.refusal = marker.refused ?? config.rejectThreshold.refusal(records: file.records, rejects: file.rejects)
            if file.rowCount != marker.rows {
                logger.warning(
                    "\(marker.file): end marker says \(marker.rows) rows, \(file.rowCount) arrived; committing what arrived")
            }
            ready.append(file)
            readyRows += file.rowCount
            readyResident += file.residentBytes
            if oldestReadyAt == nil { oldestReadyAt = file.firstLineAt }
        case .other(let kind) where kind == FolderProgress.kind:
            if let progress = FolderProgress(line) {
                config.metrics.folderProgress(
                    filesPending: progress.filesPending, bytesPending: progress.bytesPending,
                    oldestPendingSince: progress.oldestPending.map { Double($0.millisecondsSinceEpoch) / 1000 })
            }
        case .other("abandon"):
            lastFile = nil
            // The reader saw the file change under it: its lines so far are not a file.
            if let name = line.file, let file = open.removeValue(forKey: name) {
                logger.warning(
                    "\(name): the reader abandoned it (it changed while being read); \(file.rowCount) rows dropped, the file is read again whole"
                )
                reporting.withLock { $0.abandonedFiles += 1 }
            }
        case .other(let kind):
            if warnedKinds.insert(kind).inserted {
                logger.warning("stdin:\(lineNumber): lines of kind \"\(kind)\" are not loaded (first seen here)")
            }
        }
    }

    /// The pending file a record or reject belongs to, made when its first line arrives. Rows of
    /// one file arrive together: the member's raw text is compared with the last one's before a
    /// `String` is made and hashed (that was ~4 % of load's instructions per row).
    private func openFile(_ line: ProtocolLine, fileMember m: JSONMember) -> PendingFile {
        let span = line.span(m)
        if let last = lastFile, lastFileSpan.count == span.count,
            lastFileSpan.withUnsafeBytes({ memcmp($0.baseAddress!, span.baseAddress!, span.count) == 0 })
        {
            return last
        }
        let name = line.file ?? ""
        let file =
            open[name]
            ?? {
                config.metrics.fileStarted(name)
                let created = PendingFile(name: name, spoolLimit: config.spoolLimit, spoolDirectory: config.spoolDirectory, tuples: tuples)
                open[name] = created
                return created
            }()
        lastFile = file
        lastFileSpan = Array(span)
        return file
    }

    /// Adds the rows read since the last call to the metrics (per 4,096 rows, per file, and
    /// when the stream may pause; not per row: the counter's lock per row was measurable).
    private func countRowsRead() {
        config.metrics.rowsRead(rowsNotCounted)
        rowsNotCounted = 0
    }

    private func looseFile() -> PendingFile {
        let file = loose ?? PendingFile(name: nil, spoolLimit: config.spoolLimit, spoolDirectory: config.spoolDirectory, tuples: tuples)
        loose = file
        return file
    }

    /// A reject made here (malformed JSON, overlong line), without provenance.
    private func addLoose(_ bytes: some Collection<UInt8>) throws {
        let file = looseFile()
        try Array(bytes).withUnsafeBytes { try file.rejectLines.appendLine($0) }
        file.rejects += 1
        readyRows += 1
        if oldestReadyAt == nil { oldestReadyAt = file.firstLineAt }
    }

    // MARK: - Committing

    /// Starts committing every complete file, the records without provenance and the Kafka lines
    /// on a commit thread, after the batch before it in that session has committed; reading goes
    /// on meanwhile. Kafka lines always commit in session 0: one partition's batches in order.
    func commit() throws {
        countRowsRead()
        guard hasCommittable else { return }
        var session = kafka.hasLines ? 0 : nextSession
        try awaitCommit(session: session)
        if session > 0 && sessions[session].connection == nil && !openExtraSession(session) {
            session = 0
            try awaitCommit(session: 0)
        }
        // Two versions of one name (a file appended to between two reads) never share a batch:
        // the later one waits for the next, where it is judged against the committed one.
        var now: [PendingFile] = []
        var later: [PendingFile] = []
        var versions: [String: FileFingerprint] = [:]
        for file in ready {
            if let fingerprint = file.fingerprint, let first = versions[fingerprint.name], first != fingerprint {
                later.append(file)
            } else {
                if let fingerprint = file.fingerprint, versions[fingerprint.name] == nil { versions[fingerprint.name] = fingerprint }
                now.append(file)
            }
        }
        if let loose { now.append(loose) }
        ready = later
        loose = nil
        readyRows = later.reduce(0) { $0 + $1.rowCount }
        readyResident = later.reduce(0) { $0 + $1.residentBytes }
        oldestReadyAt = later.map(\.firstLineAt).min()
        let kafkaFiles = kafka.cut()
        let batch = Batch(files: now + kafkaFiles)
        if kafkaFiles.isEmpty { nextSession = (session + 1) % sessionsInUse }
        let owner = sessions[session]
        owner.inFlight = try CommitThread { [self] in
            owner.fenced = try commitBatch(batch, session: session).map { ($0, batch) }
        }
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
            sessionsInUse = 1
            nextSession = 0
            logger.warning(
                "\(config.endpoint): a second database session could not be opened (\(error)); committing in one session from now on"
            )
            return false
        }
    }

    /// Waits for every batch in flight; rethrows the first permanent error.
    func awaitCommit() throws {
        var failure: (any Error)?
        for session in sessions.indices {
            do { try awaitCommit(session: session) } catch { failure = failure ?? error }
        }
        if let failure { throw failure }
    }

    /// Waits for the batch in flight in `session`, if any; rethrows its permanent error. A batch
    /// that came back fenced is trimmed here, on the reading thread that owns the Kafka runs,
    /// and committed again before anything else of that session: partition order is kept.
    private func awaitCommit(session: Int) throws {
        guard let thread = sessions[session].inFlight else { return }
        sessions[session].inFlight = nil
        try thread.wait()
        while let returned = sessions[session].fenced {
            sessions[session].fenced = nil
            // Everything held was loaded elsewhere: nothing left to commit.
            guard let files = try kafka.fenced(returned.fence, in: returned.batch.files) else { break }
            let trimmed = Batch(files: files, as: returned.batch)
            sessions[session].fenced = try commitBatch(trimmed, session: session).map { ($0, trimmed) }
        }
    }

    /// Commits `batch`, retrying through connection loss; its rows stay in memory (or the spool)
    /// until the commit succeeded. Runs on the session's commit thread, which alone uses its
    /// connection meanwhile (or on the reading thread, recommitting a fenced batch after the
    /// join). Returns the fence when another commit moved one of its Kafka partitions: the
    /// transaction rolled back, and only the reader may trim the lines.
    private func commitBatch(_ batch: Batch, session: Int) throws -> KafkaFence? {
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
                sleepSeconds(1)
            } catch let fence as KafkaFence {
                return fence
            } catch let error as PostgresError where error.category == .connection || error.category == .retry {
                attempt += 1
                config.metrics.databaseRetry()
                drop(session)
                if let limit = config.maxRetries, attempt > limit { throw LoaderError.gaveUp(config.endpoint, error) }
                let wait = backoff(attempt)
                logger.warning("\(retryNote(error, endpoint: config.endpoint, connecting: false, wait: wait, attempt: attempt))")
                sleepSeconds(wait)
            }
        }
        let committedAt = UTCTimestamp.now()
        let elapsed = monotonicSeconds() - started
        reporting.withLock { totals in
            afterCommit(outcome, totals: &totals)
            report(outcome, elapsed: elapsed, committedAt: committedAt, totals: &totals)
        }
        return nil
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
                let wait = backoff(attempt)
                logger.warning("\(retryNote(error, endpoint: config.endpoint, connecting: true, wait: wait, attempt: attempt))")
                if attempt == 1, let hint = config.unreachableHint { logger.warning("hint: \(hint)") }
                // A stop asked for while nothing is held ends the wait at once: nothing to lose.
                if !holding && Interrupts.received == 0 { Interrupts.sleep(milliseconds: Int(wait * 1000)) } else { sleepSeconds(wait) }
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

    private func afterCommit(_ outcome: BatchOutcome, totals: inout LoaderTotals) {
        for file in outcome.files {
            guard let identity = file.fingerprint else { continue }
            if let quarantined = file.quarantine {
                totals.filesQuarantined += 1
                guard let source = config.incoming.child(identity.name), access(source, F_OK) == 0 else {
                    logger.warning(
                        "\(quarantined.detail) Not loaded (quarantine: \(quarantined.reason); the file is not in \(config.incoming.path), so nothing was moved)"
                    )
                    continue
                }
                do {
                    let moved = try ChangedFile.move(source, quarantined, into: config.quarantine.folder)
                    claims.release(identity.name)
                    logger.warning("\(quarantined.detail) Not loaded: moved to \(moved) (\(quarantined.reason))")
                } catch {
                    logger.error("\(identity.name): not loaded (\(quarantined.reason)), and not moved to quarantine: \(error)")
                }
                continue
            }
            if file.skipped, file.quarantined == nil, case .keep = config.afterCommit { continue }  // journaled when first committed
            guard let source = config.incoming.child(identity.name) else {
                logger.warning(
                    "not moving \(quotedForMessage(identity.name)): \(ContainedFolder.problem(with: identity.name) ?? "unsafe name") (load only touches plain names in \(config.incoming.path))"
                )
                continue
            }
            guard identity.isStill(at: source) else {
                // Absent (replayed from elsewhere), or appended to or replaced since it was read:
                // not the version committed, so not ours to move.
                continue
            }
            if let refusal = file.quarantined {
                do {
                    let moved = try config.quarantine.admit(
                        path: source, name: identity.name, reason: file.skipped ? "already quarantined" : "too many rejects",
                        detail: refusal)
                    logger.warning("\(identity.name): quarantined: \(refusal); moved to \(moved)")
                } catch {
                    logger.error("\(identity.name): quarantined, but \(error)")
                }
                continue
            }
            do {
                switch config.afterCommit {
                case .archive(let folder):
                    let moved = try SourceFile.move(source, into: folder, name: identity.name)
                    claims.release(identity.name)
                    logger.debug("archived \(source) to \(moved)")
                case .delete:
                    if unlink(source) != 0 { throw SystemError("unlink", errno: errno, path: source) }
                    claims.release(identity.name)
                case .keep:
                    try SourceFile.appendJournal(folder: config.incoming, file: identity)
                }
            } catch {
                logger.error("\(identity.name): committed, but \(error)")
            }
        }
    }

    private func report(_ outcome: BatchOutcome, elapsed: Double, committedAt: UTCTimestamp, totals: inout LoaderTotals) {
        let n = totals.batches
        totals.batches += 1
        totals.filesCommitted +=
            outcome.files.filter { $0.fingerprint != nil && !$0.skipped && $0.quarantine == nil && $0.quarantined == nil }.count
        totals.filesSkipped += outcome.files.filter(\.skipped).count
        totals.filesQuarantined += outcome.files.filter { $0.quarantined != nil && !$0.skipped }.count
        totals.rowsLoaded += outcome.loaded
        totals.rowsRejected += outcome.rejected
        for file in outcome.files where file.skipped {
            logger.info(
                "\(file.fingerprint?.name ?? "stdin batch"): already \(file.quarantined == nil ? "committed" : "quarantined"), skipped")
        }
        let processed = outcome.loaded + outcome.rejected
        logger.info("Batch \(n): Processed \(processed) records")
        var line = "Valid: \(outcome.loaded), Invalid: \(outcome.rejected)"
        let rate = elapsed > 0 ? Int(Double(processed) / elapsed) : processed
        line += "; \(outcome.files.filter { $0.fingerprint != nil }.count) files in \(Int(elapsed * 1000)) ms, \(rate) rows/s"
        let delays = outcome.files.compactMap { file -> Int64? in
            guard let arrived = file.seen else { return nil }
            return committedAt.millisecondsSinceEpoch - arrived.millisecondsSinceEpoch
        }
        if let worst = delays.max() { line += ", arrival to commit \(worst) ms" }
        logger.info("\(line)")
        recordMetrics(outcome, committedAt: committedAt)
    }
}

/// What one commit is handed: complete files, records without provenance, Kafka lines with
/// their spans. Moved to its commit thread, never shared.
struct Batch {
    let files: [PendingFile]
    /// Fixed for the batch, not per attempt: a retry names the same checkpoint and the same
    /// dead-letter file as the attempt before it.
    let token: String
    let deadLetterStamp: String

    init(files: [PendingFile]) {
        self.files = files
        token = randomToken()
        deadLetterStamp = UTCTimestamp.now().compactStamp
    }

    /// `files` under `batch`'s names (the fenced batch trimmed).
    init(files: [PendingFile], as batch: Batch) {
        self.files = files
        token = batch.token
        deadLetterStamp = batch.deadLetterStamp
    }
}

/// Why `load` stopped.
public enum LoaderError: Error, CustomStringConvertible {
    case permanent(String, PostgresError)
    case gaveUp(String, PostgresError)
    /// Stopped by a signal while waiting for the server, holding no rows.
    case interrupted(String)

    public var description: String {
        switch self {
        case .permanent(let endpoint, let error): "\(endpoint): \(error.description)"
        case .gaveUp(let endpoint, let error): "\(endpoint): giving up after repeated failures: \(error.description)"
        case .interrupted(let endpoint): "\(endpoint): interrupted while waiting for the server"
        }
    }
}

func backoff(_ attempt: Int) -> Double {
    min(30, 0.25 * Double(1 << min(attempt, 8)))
}

func formatSeconds(_ s: Double) -> String {
    s < 1 ? "\(Int(s * 1000)) ms" : "\(Int(s)) s"
}

func sleepSeconds(_ s: Double) {
    var request = timespec(tv_sec: Int(s), tv_nsec: Int((s - Double(Int(s))) * 1e9))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}

func randomToken() -> String {
    var g = SystemRandomNumberGenerator()
    let hex = Array("0123456789abcdef")
    return String((0..<32).map { _ in hex[Int(g.next() % 16)] })
}

extension String {
    func replacingNUL() -> String {
        unicodeScalars.contains("\0") ? String(String.UnicodeScalarView(unicodeScalars.map { $0 == "\0" ? "\u{FFFD}" : $0 })) : self
    }
}
