import Postgres
import Ingest
import Logging

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
    public var table: String = "ecommerce_events"
    public var checkpointTable: String = "ingest_checkpoints"
    public var badRecordsTable: String = "ecommerce_bad_records"
    /// Commit once this many rows of complete files are waiting.
    public var batchRows: Int = 20_000
    /// Commit at the latest this long after the oldest waiting row arrived.
    public var maxDelay: Double = 1.0
    public var incoming: ContainedFolder = ContainedFolder("data/incoming")
    public var badRecords: ContainedFolder = ContainedFolder("data/bad_records")
    public var afterCommit: AfterCommit = .archive(ContainedFolder("data/processed"))
    /// Give up after this many failed attempts to reach the server (nil: never give up).
    public var maxRetries: Int? = nil
    public var spoolLimit: Int = 8 << 20
    public var spoolDirectory: String = Spool.defaultDirectory

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
    public var rowsLoaded = 0
    public var rowsRejected = 0
    public var incompleteFiles = 0
}

/// The sink of the pipeline: reads the line protocol, commits complete files to PostgreSQL
/// with COPY, exactly once, and keeps every reject in the dead letters.
///
/// Exactly once: a file's rows, its rejects and its checkpoint row (name, size, SHA-256) are
/// written in one transaction, and a file whose checkpoint exists is skipped. Rows of a file
/// whose end marker never arrived (an upstream crash) are never committed: the file is still
/// in the incoming folder and is read again after a restart.
public final class Loader {
    let config: LoaderConfiguration
    let logger: Logger
    private var connection: PostgresConnection?
    private var open: [String: PendingFile] = [:]
    private var ready: [PendingFile] = []
    private var loose: PendingFile?
    private var readyRows = 0
    private var oldestReadyAt: Double?
    private var decoder = LineDecoder()
    /// The batch committing while the next one fills (see `CommitThread`).
    private var inFlight: CommitThread?
    private var warnedKinds: Set<String> = []
    public private(set) var totals = LoaderTotals()
    private let sql: LoaderSQL

    public init(config: LoaderConfiguration, logger: Logger) {
        self.config = config
        self.logger = logger
        self.sql = LoaderSQL(config: config)
    }

    // MARK: - Reading

    /// Reads `fd` to end of input, committing as it goes. Throws on permanent errors only.
    public func run(fd: Int32) throws {
        _ = try connectedConnection()
        let reader = LineReader(fd: fd)
        while true {
            if hasCommittable && !reader.hasBufferedLine && !reader.inputReady(timeoutMilliseconds: 0) {
                // A quiet stream: commit now rather than hold rows back.
                try commit()
            }
            guard let item = try reader.next() else { break }
            switch item {
            case .line(let bytes) where isTruncatedTail(bytes, reader: reader):
                logger.warning("stdin:\(reader.lineNumber): input ended in the middle of a line (\(bytes.count) bytes dropped): the upstream stage stopped mid-write")
            case .line(let bytes):
                try accept(bytes, lineNumber: reader.lineNumber)
            case .overlong(let count):
                var reject: [UInt8] = []
                let note = Array("(\(count) bytes, not kept)".utf8)
                note.withUnsafeBytes {
                    LineEncoder.appendMalformedLine($0, lineNumber: reader.lineNumber, problem: "line longer than \(reader.maxLineLength) bytes", into: &reject)
                }
                try addLoose(reject.dropLast())
            }
            if readyRows >= config.batchRows {
                try commit()
            } else if let oldest = oldestReadyAt, monotonicSeconds() - oldest >= config.maxDelay {
                try commit()
            }
        }
        try commit()
        try awaitCommit()
        for (name, file) in open {
            totals.incompleteFiles += 1
            logger.warning(
                "\(name): input ended before its end marker; \(file.rowCount) rows not committed (the file is loaded when it is read again)")
        }
        open.removeAll()
    }

    private var hasCommittable: Bool { !ready.isEmpty || loose != nil }

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
        switch line.kind {
        case .record, .reject:
            let isReject = line.kind == .reject
            if let name = line.file {
                let file = open[name] ?? {
                    let created = PendingFile(name: name, spoolLimit: config.spoolLimit, spoolDirectory: config.spoolDirectory)
                    open[name] = created
                    return created
                }()
                try file.add(line, isReject: isReject)
            } else {
                let file = looseFile()
                try file.add(line, isReject: isReject)
                readyRows += 1
                if oldestReadyAt == nil { oldestReadyAt = file.firstLineAt }
            }
        case .endOfFile:
            guard var marker = FileMarker(line) else {
                logger.warning("stdin:\(lineNumber): end marker without file, rows, bytes and sha256; ignored")
                return
            }
            marker.file = marker.file.replacingNUL()
            let file = open.removeValue(forKey: line.file ?? marker.file)
                ?? PendingFile(name: marker.file, spoolLimit: config.spoolLimit, spoolDirectory: config.spoolDirectory)
            file.marker = marker
            if file.rowCount != marker.rows {
                logger.warning(
                    "\(marker.file): end marker says \(marker.rows) rows, \(file.rowCount) arrived; committing what arrived")
            }
            ready.append(file)
            readyRows += file.rowCount
            if oldestReadyAt == nil { oldestReadyAt = file.firstLineAt }
        case .other(let kind):
            if warnedKinds.insert(kind).inserted {
                logger.warning("stdin:\(lineNumber): lines of kind \"\(kind)\" are not loaded (first seen here)")
            }
        }
    }

    private func looseFile() -> PendingFile {
        let file = loose ?? PendingFile(name: nil, spoolLimit: config.spoolLimit, spoolDirectory: config.spoolDirectory)
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

    /// Starts committing every complete file and the records without provenance on the commit
    /// thread, after the batch before it has committed; reading goes on meanwhile.
    func commit() throws {
        guard hasCommittable else { return }
        try awaitCommit()
        var batch = ready
        if let loose { batch.append(loose) }
        ready.removeAll()
        loose = nil
        readyRows = 0
        oldestReadyAt = nil
        inFlight = try CommitThread { [self] in try commitBatch(batch) }
    }

    /// Waits for the batch in flight, if any; rethrows its permanent error.
    func awaitCommit() throws {
        guard let thread = inFlight else { return }
        inFlight = nil
        try thread.wait()
    }

    /// Commits `batch`, retrying through connection loss; its rows stay in memory (or the
    /// spool) until the commit succeeded. Runs on the commit thread, which alone uses the
    /// connection and the totals while it runs.
    private func commitBatch(_ batch: [PendingFile]) throws {
        let started = monotonicSeconds()
        let token = randomToken()
        var attempt = 0
        var outcome: BatchOutcome
        while true {
            do {
                let conn = try connectedConnection()
                outcome = try BatchCommit(sql: sql, connection: conn, files: batch, token: token, config: config, logger: logger).run()
                break
            } catch let error as PostgresError where error.category == .connection || error.category == .retry {
                attempt += 1
                connection = nil
                if let limit = config.maxRetries, attempt > limit { throw LoaderError.gaveUp(config.endpoint, error) }
                let wait = backoff(attempt)
                logger.warning(
                    "commit failed, \(config.endpoint): \(error.description); retrying in \(formatSeconds(wait)) (attempt \(attempt))")
                sleepSeconds(wait)
            }
        }
        let committedAt = UTCTimestamp.now()
        let elapsed = monotonicSeconds() - started
        afterCommit(outcome)
        report(outcome, elapsed: elapsed, committedAt: committedAt)
    }

    /// A live connection, made with retries and backoff while the server is unreachable.
    func connectedConnection() throws -> PostgresConnection {
        if let connection, !connection.isConnectionBad { return connection }
        connection = nil
        var attempt = 0
        while true {
            do {
                let conn = try PostgresConnection(conninfo: config.conninfo)
                try sql.checkTables(conn)
                if attempt > 0 { logger.info("connected to \(config.endpoint) after \(attempt) failed attempts") }
                connection = conn
                return conn
            } catch let error as PostgresError where error.category == .connection {
                attempt += 1
                if let limit = config.maxRetries, attempt > limit { throw LoaderError.gaveUp(config.endpoint, error) }
                let wait = backoff(attempt)
                logger.warning(
                    "cannot reach \(config.endpoint): \(error.description); retrying in \(formatSeconds(wait)) (attempt \(attempt))")
                sleepSeconds(wait)
            } catch let error as PostgresError {
                throw LoaderError.permanent(config.endpoint, error)
            }
        }
    }

    private func afterCommit(_ outcome: BatchOutcome) {
        for file in outcome.files {
            guard let identity = file.fingerprint else { continue }
            if file.skipped, case .keep = config.afterCommit { continue }  // journaled when first committed
            guard let source = config.incoming.child(identity.name) else {
                logger.warning(
                    "not moving \(quotedForMessage(identity.name)): \(ContainedFolder.problem(with: identity.name) ?? "unsafe name") (load only touches plain names in \(config.incoming.path))")
                continue
            }
            guard identity.isStill(at: source) else {
                // Absent (replayed from elsewhere), or appended to or replaced since it was read:
                // not the version committed, so not ours to move.
                continue
            }
            do {
                switch config.afterCommit {
                case .archive(let folder):
                    let moved = try SourceFile.move(source, into: folder, name: identity.name)
                    logger.debug("archived \(source) to \(moved)")
                case .delete:
                    if unlink(source) != 0 { throw SystemError("unlink", errno: errno, path: source) }
                case .keep:
                    try SourceFile.appendJournal(folder: config.incoming, file: identity)
                }
            } catch {
                logger.error("\(identity.name): committed, but \(error)")
            }
        }
    }

    private func report(_ outcome: BatchOutcome, elapsed: Double, committedAt: UTCTimestamp) {
        let n = totals.batches
        totals.batches += 1
        totals.filesCommitted += outcome.files.filter { $0.fingerprint != nil && !$0.skipped }.count
        totals.filesSkipped += outcome.files.filter(\.skipped).count
        totals.rowsLoaded += outcome.loaded
        totals.rowsRejected += outcome.rejected
        for file in outcome.files where file.skipped {
            logger.info("\(file.fingerprint?.name ?? "stdin batch"): already committed, skipped")
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
    }
}

/// Why `load` stopped.
public enum LoaderError: Error, CustomStringConvertible {
    case permanent(String, PostgresError)
    case gaveUp(String, PostgresError)

    public var description: String {
        switch self {
        case .permanent(let endpoint, let error): "\(endpoint): \(error.description)"
        case .gaveUp(let endpoint, let error): "\(endpoint): giving up after repeated failures: \(error.description)"
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
