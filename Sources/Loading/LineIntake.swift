import Ingest
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What `load`'s input builds up, line by line: the files still open (no end marker yet), the
/// complete files ready to commit, the records without provenance (`loose`), and the Kafka
/// runs. Reading-thread state only (see ``CommitSessions`` for who owns what): a commit thread
/// gets what ``takeBatch(session:of:)`` hands over and never reads anything here.
final class LineIntake {
    private let config: LoaderConfiguration
    private let logger: Logger
    private let reporter: BatchReporter
    /// Makes each record's tuple as it arrives (the reading thread's alone).
    private let tuples: TupleEncoder
    // `@exclusivity(unchecked)` on the fields touched per line: the reading thread alone uses
    // them, and each dynamic check cost ~150 instructions of load's row (callgrind).
    @exclusivity(unchecked) private var decoder = LineDecoder()
    private var open: [String: PendingFile] = [:]
    @exclusivity(unchecked) private var ready: [PendingFile] = []
    @exclusivity(unchecked) private var loose: PendingFile?
    /// Rows waiting: of the complete files, the loose records and the Kafka lines.
    @exclusivity(unchecked) private(set) var readyRows = 0
    /// Bytes the complete files waiting hold in memory.
    @exclusivity(unchecked) private(set) var readyResident = 0
    /// Monotonic time the oldest waiting row arrived, for `--max-delay`.
    @exclusivity(unchecked) private(set) var oldestReadyAt: Double?
    /// Each Kafka partition's lines since its last cut.
    let kafka: KafkaRuns
    private var warnedKinds: Set<String> = []
    /// The file of the last record line, and that line's `file` member as raw JSON text.
    @exclusivity(unchecked) private var lastFile: PendingFile?
    @exclusivity(unchecked) private var lastFileSpan: [UInt8] = []
    @exclusivity(unchecked) private var rowsNotCounted = 0

    init(config: LoaderConfiguration, tuples: TupleEncoder, reporter: BatchReporter, logger: Logger) {
        self.config = config
        self.tuples = tuples
        self.reporter = reporter
        self.logger = logger
        kafka = KafkaRuns(
            spoolLimit: config.spoolLimit, spoolDirectory: config.spoolDirectory, tuples: tuples, metrics: config.metrics, logger: logger)
    }

    var hasCommittable: Bool { !ready.isEmpty || loose != nil || kafka.hasLines }

    /// True when a batch cut for `session` (of `sessions` in use) would hold something.
    func hasCommittable(session: Int, of sessions: Int) -> Bool {
        !ready.isEmpty || loose != nil || kafka.hasLines(session: session, of: sessions)
    }

    /// True when rows were read since the metrics last heard of them.
    var hasRowsNotCounted: Bool { rowsNotCounted > 0 }

    /// Takes one protocol line (`bytes`, without its newline).
    func accept(_ bytes: UnsafeRawBufferPointer, lineNumber: Int) throws {
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
        case .record:
            try row(line, isReject: false)
        case .reject:
            try row(line, isReject: true)
        case .endOfFile:
            try endOfFile(line, lineNumber: lineNumber)
        case .other(let kind) where kind == FolderProgress.kind:
            if let progress = FolderProgress(line) {
                config.metrics.folderProgress(
                    filesPending: progress.filesPending, bytesPending: progress.bytesPending,
                    oldestPendingSince: progress.oldestPending.map { Double($0.millisecondsSinceEpoch) / 1000 })
            }
        case .other("abandon"):
            abandon(line)
        case .other(let kind):
            if warnedKinds.insert(kind).inserted {
                logger.warning("stdin:\(lineNumber): lines of kind \"\(kind)\" are not loaded (first seen here)")
            }
        }
    }

    /// A line longer than the reader takes: kept as a reject without provenance, its size only
    /// (the form validate writes for one).
    func rejectOverlong(_ count: Int, lineNumber: Int, maxLength: Int) throws {
        var reject: [UInt8] = []
        LineEncoder.appendOverlongLine(byteCount: count, limit: maxLength, inputLine: lineNumber, into: &reject)
        try addLoose(reject.dropLast())
    }

    private func row(_ line: ProtocolLine, isReject: Bool) throws {
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
    }

    /// A file's end marker: the file is complete and waits for the next batch.
    private func endOfFile(_ line: ProtocolLine, lineNumber: Int) throws {
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
        try file.seal()
        // The file is complete and its reject count known: decide here, apply at commit.
        file.refusal = marker.refused ?? config.rejectThreshold.refusal(records: file.records, rejects: file.rejects)
        if file.rowCount != marker.rows {
            logger.warning("\(marker.file): end marker says \(marker.rows) rows, \(file.rowCount) arrived; committing what arrived")
        }
        ready.append(file)
        readyRows += file.rowCount
        readyResident += file.residentBytes
        if oldestReadyAt == nil { oldestReadyAt = file.firstLineAt }
    }

    /// The reader saw the file change under it: its lines so far are not a file.
    private func abandon(_ line: ProtocolLine) {
        lastFile = nil
        guard let name = line.file, let file = open.removeValue(forKey: name) else { return }
        logger.warning(
            "\(name): the reader abandoned it (it changed while being read); \(file.rowCount) rows dropped, the file is read again whole")
        reporter.count { $0.abandonedFiles += 1 }
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
    func countRowsRead() {
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

    /// Hands over, for `session` (of `sessions` in use), every complete file that may share a
    /// batch (``BatchPolicy/split(_:)``), the records without provenance and the lines of the
    /// Kafka partitions that commit in that session (``KafkaRuns/cut(session:of:)``).
    func takeBatch(session: Int, of sessions: Int) -> Batch {
        var (now, later) = BatchPolicy.split(ready)
        if let loose { now.append(loose) }
        ready = later
        loose = nil
        let cut = kafka.cut(session: session, of: sessions)
        let kafkaHeld = kafka.held
        readyRows = later.reduce(0) { $0 + $1.rowCount } + kafkaHeld.rows
        readyResident = later.reduce(0) { $0 + $1.residentBytes }
        oldestReadyAt = (later.map(\.firstLineAt) + [kafkaHeld.since].compactMap { $0 }).min()
        return Batch(files: now + cut)
    }

    /// At end of input: the files whose end marker never came are not committed (they are read
    /// again whole after a restart); said, and counted.
    func dropIncompleteFiles() {
        for (name, file) in open {
            reporter.count { $0.incompleteFiles += 1 }
            logger.warning(
                "\(name): input ended before its end marker; \(file.rowCount) rows not committed (the file is loaded when it is read again)"
            )
        }
        config.metrics.filesFinished(Array(open.keys))
        open.removeAll()
    }
}

extension String {
    func replacingNUL() -> String {
        unicodeScalars.contains("\0") ? String(String.UnicodeScalarView(unicodeScalars.map { $0 == "\0" ? "\u{FFFD}" : $0 })) : self
    }
}
