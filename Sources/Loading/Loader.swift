import Ingest
import Logging
import Postgres

/// The sink of the pipeline: reads the line protocol, commits complete files to PostgreSQL
/// with COPY, exactly once, and keeps every reject in the dead letters.
///
/// Exactly once: a file's rows, its rejects and its checkpoint row (name, size, SHA-256) are
/// written in one transaction, and a file whose checkpoint exists is skipped. Rows of a file
/// whose end marker never arrived (an upstream crash) are never committed: the file is still
/// in the incoming folder and is read again after a restart.
///
/// Its parts, one job each: ``LineIntake`` (what the input builds up), ``BatchPolicy`` (when
/// that becomes a batch), ``CommitSessions`` (threads, connections, retries; its doc comment
/// says which thread owns what), ``BatchCommit`` (one transaction), ``FileDisposition`` (the
/// source files after commit), ``BatchReporter`` (totals, log lines, metrics). This class reads
/// and wires them, on the reading thread.
public final class Loader {
    let config: LoaderConfiguration
    let logger: Logger
    let tuples: TupleEncoder
    let sessions: CommitSessions
    private let intake: LineIntake
    private let policy: BatchPolicy
    private let reporter: BatchReporter
    /// Claims of pipelines sharing the incoming folder (`watch --shared`): released once a file
    /// has left the folder, and this pipeline marked alive while it works.
    private let claims: FileClaims
    /// The reading thread's alone: unchecked, as a dynamic check per line cost ~150 instructions.
    @exclusivity(unchecked) private var lastBeat: Double = 0
    @exclusivity(unchecked) private var linesSinceClock = 0

    public init(config: LoaderConfiguration, logger: Logger) {
        self.config = config
        self.logger = logger
        let plan = LoadPlan(contract: config.contract, table: TableName(config.table))
        tuples = TupleEncoder(plan: plan, keyOrdered: config.keyOrder)
        claims = FileClaims(folder: config.incoming.path, pipeline: config.pipeline)
        let disposition = FileDisposition(
            incoming: config.incoming, afterCommit: config.afterCommit, quarantine: config.quarantine, claims: claims, logger: logger)
        reporter = BatchReporter(disposition: disposition, metrics: config.metrics, logger: logger)
        sessions = CommitSessions(config: config, sql: LoaderSQL(config: config, plan: plan), reporter: reporter, logger: logger)
        intake = LineIntake(config: config, tuples: tuples, reporter: reporter, logger: logger)
        policy = BatchPolicy(config)
    }

    /// Totals so far, of every batch committed and every file abandoned.
    public var totals: LoaderTotals { reporter.totals }

    /// How often a quiet reading thread looks for a finished batch in flight.
    static let inFlightPollMilliseconds: Int32 = 20

    /// Reads `fd` to end of input, committing as it goes. Throws on permanent errors only.
    public func run(fd: Int32) throws {
        try adoptCatalog()
        // The extra sessions connect now, not at their first batch: a connection (SCRAM, the
        // backend's start) was ~20 ms of the second file's rename-to-commit delay.
        for session in sessions.indices { _ = sessions.isUsable(session) }
        let reader = LineReader(fd: fd)
        while true {
            if intake.hasCommittable && !reader.hasBufferedLine
                && !reader.inputReady(timeoutMilliseconds: policy.quietAfterMilliseconds(kafka: intake.kafka.hasLines))
            {
                // A quiet stream: commit now rather than hold rows back. Kafka lines while the
                // batch before them still commits wait for it here, input still read, rather
                // than in the join: what arrives meanwhile joins them.
                if intake.kafka.hasLines && sessions.isCommitting(nextSession()) { continue }
                try commit()
            }
            if !intake.hasCommittable && !reader.hasBufferedLine && sessions.hasInFlight
                && !reader.inputReady(timeoutMilliseconds: Self.inFlightPollMilliseconds)
            {
                // Nothing waits but a batch in flight: join it once done rather than at the next
                // line, which a quiet stream may never send. A fenced Kafka batch is trimmed and
                // committed again now (two pipelines reading the same partitions stalled here),
                // and a commit's permanent error ends the run now.
                for session in sessions.indices where sessions.hasFinished(session) { try join(session) }
                continue
            }
            guard let item = try reader.next() else { break }
            try take(item, from: reader)
        }
        intake.countRowsRead()
        while intake.hasCommittable { try commit() }
        try joinAll()
        intake.dropIncompleteFiles()
    }

    /// One item of input, then a commit if the batch is full or overdue.
    private func take(_ item: LineReader.Item, from reader: LineReader) throws {
        // The clock is read every 64 lines, or when no further line is buffered (the stream may
        // pause next): once per line it was ~2 % of load's time per row.
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
            try intake.accept(bytes, lineNumber: reader.lineNumber)
        case .overlong(let count):
            try intake.rejectOverlong(count, lineNumber: reader.lineNumber, maxLength: reader.maxLineLength)
        }
        // The rows-read counter is live: brought up to date whenever the stream may pause.
        if checkClock && intake.hasRowsNotCounted { intake.countRowsRead() }
        if policy.isFull(rows: intake.readyRows, resident: intake.readyResident) {
            try commit()
        } else if checkClock, policy.isOverdue(oldest: intake.oldestReadyAt, now: monotonicSeconds()) {
            try commit()
        }
    }

    /// Marks the pipeline alive every second or so, when the folder is shared.
    private func beat() {
        let now = monotonicSeconds()
        guard now - lastBeat >= 1 else { return }
        lastBeat = now
        if claims.isInUse { try? claims.beat() }
    }

    /// Starts committing what is waiting on a commit thread, after the batch before it in that
    /// session has committed; reading goes on meanwhile. A Kafka partition's lines always go to
    /// the same session (``KafkaRuns``).
    func commit() throws {
        intake.countRowsRead()
        guard intake.hasCommittable else { return }
        var session = nextSession()
        try join(session)
        if !sessions.isUsable(session) {
            session = 0
            try join(0)
        }
        let batch = intake.takeBatch(session: session, of: sessions.inUse)
        // A later version of a file whose earlier one still commits in another session waits
        // for it: with both sessions free, the later could take the name's lock first and the
        // earlier be judged against it (CI saw the 50-row version load, the 30-row one refused).
        let names = Set(batch.files.lazy.compactMap(\.name))
        for other in sessions.indices where other != session && sessions.holdsAny(of: names, in: other) { try join(other) }
        try sessions.start(batch, in: session)
    }

    /// The session the next batch goes to: the next in turn, or the first after it with
    /// something to commit (the Kafka lines held may all be of the other session's partitions).
    private func nextSession() -> Int {
        let first = sessions.next
        let count = sessions.inUse
        return (0..<count).lazy.map { (first + $0) % count }.first { self.intake.hasCommittable(session: $0, of: count) } ?? first
    }

    /// Waits for `session`'s batch in flight. A batch that came back fenced is trimmed here, on
    /// the reading thread that owns the Kafka runs, and committed again before anything else of
    /// that session: partition order is kept.
    private func join(_ session: Int) throws {
        var returned = try sessions.join(session)
        while let fenced = returned {
            // Nothing left: everything held was loaded elsewhere.
            guard let files = try intake.kafka.fenced(fenced.fence, in: fenced.batch.files) else { return }
            let trimmed = Batch(files: files, as: fenced.batch)
            returned = try sessions.commit(trimmed, in: session).map { Batch.Fenced(fence: $0, batch: trimmed) }
        }
    }

    /// Waits for every batch in flight; rethrows the first permanent error.
    func joinAll() throws {
        var failure: (any Error)?
        for session in sessions.indices {
            do { try join(session) } catch { failure = failure ?? error }
        }
        if let failure { throw failure }
    }
}
