import Ingest
import Postgres

/// The lines received for one source file (or for records without provenance), waiting for
/// the file's end marker and then for the commit.
final class PendingFile {
    /// The source file name as the stream gave it; nil for records without provenance.
    let name: String?
    /// Each record's binary COPY tuple, built once when the record arrived, in runs sorted by
    /// key: the commit only merges and streams them.
    let copyRows: TupleRuns
    /// True when a record was not in the canonical form the binary tuples need: the file's
    /// rows then go through the text path (`CopyText`), where the server judges each row.
    // `@exclusivity(unchecked)` on the per-row fields: a file is filled by the reading thread,
    // then handed whole to one commit thread; never two at once.
    @exclusivity(unchecked) var needsTextPath = false
    /// Records as received, read again only when the server refuses a row (to find it).
    let recordLines: Spool
    /// Rejects as received: the dead-letter pass reads these alone, never the records.
    let rejectLines: Spool
    @exclusivity(unchecked) var records = 0
    @exclusivity(unchecked) var rejects = 0
    /// Set when the end marker arrived: the file is complete and may be committed.
    var marker: FileMarker?
    /// Why the complete file is refused as a whole (over the reject threshold); nil: it loads.
    var refusal: String?
    /// Set for a Kafka partition's lines: the offsets they cover, for the commit's fencing.
    var kafka: KafkaSpan?
    /// Monotonic time of the first line, for `--max-delay`.
    let firstLineAt: Double
    /// Makes each record's tuple in the table's formats (the reading thread's, shared by every file).
    private let tuples: TupleEncoder

    init(name: String?, spoolLimit: Int, spoolDirectory: String, tuples: TupleEncoder) {
        self.name = name
        self.tuples = tuples
        // Three batches live at once (two committing, one filling), each of up to three spools
        // per file: small shares of memory before disk (a reused, page-cached file: cheap)
        // keep load's resident memory flat and low: its libraries alone are ~23 MB of the 25 MB
        // it may use. A 50-row file stays in memory; a batch of small files is bounded by
        // `LoaderConfiguration.batchMemory`. Tuples are read back once (COPY), record and
        // reject lines only for dead letters and isolation.
        self.copyRows = TupleRuns(keyField: tuples.orderKeyField, runBytes: min(spoolLimit, 64 << 10), directory: spoolDirectory)
        self.recordLines = Spool(memoryLimit: min(spoolLimit, 16 << 10), directory: spoolDirectory)
        self.rejectLines = Spool(memoryLimit: min(spoolLimit, 16 << 10), directory: spoolDirectory)
        self.firstLineAt = monotonicSeconds()
    }

    var rowCount: Int { records + rejects }

    /// Bytes of memory this file's lines and tuples hold (the rest is on disk), and about what
    /// the file's objects, name and places in the intake's tables cost beside them.
    var residentBytes: Int {
        PendingFile.fixedBytes + copyRows.residentBytes + recordLines.residentBytes + rejectLines.residentBytes
    }

    /// The objects of a file without its bytes: this one, its three spools, its name, its
    /// entries in the intake (malloc's rounding included), ~1 KB.
    static let fixedBytes = 1 << 10

    /// The file is complete (its end marker came): its spools keep only what they hold.
    func seal() throws {
        try copyRows.seal()
        try recordLines.seal()
        try rejectLines.seal()
    }

    /// Keeps a record (its COPY row, made now, and its line) or a reject (its line).
    func add(_ line: ProtocolLine, isReject: Bool) throws {
        if isReject {
            try rejectLines.appendLine(line.bytes)
            rejects += 1
        } else {
            if !needsTextPath {
                var canonical = true
                try copyRows.append(atMost: tuples.maxTupleSize(line)) { at in
                    guard let count = tuples.writeRow(from: line, to: at) else {
                        canonical = false
                        return 0
                    }
                    return count
                }
                if !canonical { needsTextPath = true }
            }
            try recordLines.appendLine(line.bytes)
            records += 1
        }
    }

    /// The file as its marker describes it, under the name its lines carried.
    var fingerprint: FileFingerprint? {
        guard let name, var fingerprint = marker?.fingerprint else { return nil }
        fingerprint.name = name
        return fingerprint
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
