import Ingest
import Logging
import Postgres

/// Where a batch's lines of one Kafka partition sit among its offsets: the commit stores
/// `next` only if the stored offset is still `from` (fencing).
struct KafkaSpan: Hashable {
    var topic: String
    var partition: Int
    /// The stored offset the lines continue from; nil when none was stored (first load).
    var from: Int64?
    /// The offset after the last line: what the commit stores.
    var next: Int64
    var first: Int64
}

/// The commit found another offset stored than the one its lines of a partition continue from:
/// another pipeline (or an earlier assignment of this one) committed this partition meanwhile.
struct KafkaFence: Error, CustomStringConvertible {
    var topic: String
    var partition: Int
    var expected: Int64?
    var stored: Int64?

    var description: String {
        "\(topic)/\(partition): fenced: the stored next offset is \(stored.map(String.init) ?? "absent"), the batch continued from \(expected.map(String.init) ?? "none stored")"
    }
}

/// The Kafka lines `load` holds, per partition: a run of increasing offsets that continues
/// from the partition's stored offset, so one conditional UPDATE proves the run is ours.
///
/// - An `assigned` line (written by `consume` at each assignment) starts a run at the offset
///   `consume` read from PostgreSQL, unless lines up to there are already held: then the lines
///   that follow and repeat held offsets (a reassignment to the same pipeline re-delivers what
///   is still in the pipe) are dropped, since the first copies are held or committed.
/// - At commit, a fenced run drops its lines below the stored offset (they were loaded by
///   whoever moved it) and continues from there; nothing is loaded twice, nothing skipped.
final class KafkaRuns {
    struct Key: Hashable, Comparable {
        var topic: String
        var partition: Int
        static func < (a: Key, b: Key) -> Bool { (a.topic, a.partition) < (b.topic, b.partition) }
    }

    final class Run {
        var from: Int64?
        /// The highest offset received (held or committed); nil before the first line.
        var last: Int64?
        var first: Int64?
        var pending: PendingFile?
        /// Set when the stored offset went backwards (reset by hand): lines are dropped until
        /// the next assignment.
        var halted = false
        init(from: Int64?) { self.from = from }
    }

    private var runs: [Key: Run] = [:]
    private let spoolLimit: Int
    private let spoolDirectory: String
    private let logger: Logger
    private let tuples: TupleEncoder
    private var redelivered = 0

    init(spoolLimit: Int, spoolDirectory: String, tuples: TupleEncoder, logger: Logger) {
        self.spoolLimit = spoolLimit
        self.tuples = tuples
        self.spoolDirectory = spoolDirectory
        self.logger = logger
    }

    var hasLines: Bool { runs.values.contains { ($0.pending?.rowCount ?? 0) > 0 } }

    /// Takes `line` if it is a Kafka line: returns the rows it added (0 or 1), nil if not Kafka.
    func accept(_ line: ProtocolLine, _ bytes: UnsafeRawBufferPointer) throws -> Int? {
        guard let topic = string(line, "topic"), let partition = int(line, "partition") else { return nil }
        let key = Key(topic: topic, partition: partition)
        switch line.kind {
        case .other("assigned"):
            assigned(key, next: int(line, "next_offset").map(Int64.init))
            return 0
        case .other("watermarks"):
            return KafkaLag.observe(line, key, runs[key])
        case .record, .reject:
            guard let offset = int(line, "offset").map(Int64.init) else { return nil }
            let run =
                runs[key]
                ?? {
                    logger.warning(
                        "\(topic)/\(partition): lines before any \"assigned\" line; treating them as the first load of the partition")
                    let created = Run(from: nil)
                    runs[key] = created
                    return created
                }()
            if run.halted { return 0 }
            if let last = run.last, offset <= last {
                redelivered += 1
                return 0
            }
            if let expected = run.last.map({ $0 + 1 }) ?? run.from, offset > expected {
                // Kafka has no messages there any more (retention deleted them before they were
                // loaded, compaction, transaction markers): nothing to load, but say so.
                logger.warning(
                    "\(topic)/\(partition): offsets \(expected)–\(offset - 1) were not delivered (\(offset - expected) messages: deleted by retention before loading, compacted, or transaction markers)"
                )
            }
            let file = run.pending ?? PendingFile(name: nil, spoolLimit: spoolLimit, spoolDirectory: spoolDirectory, tuples: tuples)
            run.pending = file
            try file.add(line, isReject: line.kind == .reject)
            if run.first == nil { run.first = offset }
            run.last = offset
            return 1
        default:
            return nil
        }
    }

    private func assigned(_ key: Key, next: Int64?) {
        guard let run = runs[key], !run.halted, let last = run.last else {
            runs[key] = Run(from: next)
            return
        }
        if let next, next > last + 1 {
            // Loaded past everything we hold, by another pipeline: what we hold is stale.
            if let pending = run.pending, pending.rowCount > 0 {
                logger.info(
                    "\(key.topic)/\(key.partition): reassigned at \(next); dropping \(pending.rowCount) held lines below it (loaded elsewhere)"
                )
            }
            runs[key] = Run(from: next)
        }
        // Otherwise the new assignment re-delivers offsets we hold or committed: dropped as they come.
    }

    /// The held lines of every partition, each with its span, in a fixed order (so concurrent
    /// pipelines lock the offset rows in the same order and cannot deadlock).
    func pendingFiles() -> [PendingFile] {
        runs.keys.sorted().compactMap { key in
            let run = runs[key]!
            guard let file = run.pending, file.rowCount > 0, let last = run.last else { return nil }
            file.kafka = KafkaSpan(topic: key.topic, partition: key.partition, from: run.from, next: last + 1, first: run.first ?? last)
            return file
        }
    }

    /// After a commit: each committed run continues from its new stored offset.
    func committed(_ files: [PendingFile]) {
        for file in files {
            guard let span = file.kafka, let run = runs[Key(topic: span.topic, partition: span.partition)], run.pending === file else {
                continue
            }
            run.from = span.next
            run.pending = nil
            run.first = nil
        }
        if redelivered > 0 {
            logger.debug("dropped \(redelivered) re-delivered Kafka lines (offsets already held or committed)")
            redelivered = 0
        }
    }

    /// After a fenced commit (rolled back): drop the lines below the stored offset and continue
    /// from it; if the stored offset went backwards or vanished, drop everything and wait for
    /// the next assignment.
    func fenced(_ fence: KafkaFence) throws {
        let key = Key(topic: fence.topic, partition: fence.partition)
        guard let run = runs[key] else { return }
        guard let stored = fence.stored, fence.expected.map({ stored >= $0 }) ?? true else {
            logger.error(
                "\(fence.description): the stored offset went backwards or vanished (reset by hand?); dropping this partition's lines until it is assigned again"
            )
            run.halted = true
            run.pending = nil
            return
        }
        var kept = 0
        var dropped = 0
        if let old = run.pending {
            let file = PendingFile(name: nil, spoolLimit: spoolLimit, spoolDirectory: spoolDirectory, tuples: tuples)
            var decoder = LineDecoder()
            var first: Int64?
            // Records and rejects are held apart, each in offset order.
            for lines in [old.recordLines, old.rejectLines] {
                try lines.forEachLine { bytes in
                    guard let line = try? decoder.decode(bytes), let offset = int(line, "offset").map(Int64.init) else { return }
                    guard offset >= stored else {
                        dropped += 1
                        return
                    }
                    try file.add(line, isReject: line.kind == .reject)
                    first = min(first ?? offset, offset)
                    kept += 1
                }
            }
            run.pending = kept > 0 ? file : nil
            run.first = first
        }
        run.from = stored
        if let last = run.last, last < stored - 1 { run.last = stored - 1 } else if run.last == nil { run.last = stored - 1 }
        logger.warning("\(fence.description); batch rolled back; \(dropped) lines below \(stored) dropped as already loaded, \(kept) kept")
    }

    // The protocol's own keys are looked up by `ProtocolLine`; Kafka's are few, found by name.
    private func member(_ line: ProtocolLine, _ name: StaticString) -> JSONMember? {
        let wanted = UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
        return line.members.last { m in
            let key = line.keySpan(m)
            return key.count == wanted.count && key.elementsEqual(wanted)
        }
    }

    private func string(_ line: ProtocolLine, _ name: StaticString) -> String? {
        guard let m = member(line, name), m.kind == .string else { return nil }
        return line.withStringBytes(m) { String(decoding: $0, as: UTF8.self) }
    }

    private func int(_ line: ProtocolLine, _ name: StaticString) -> Int? {
        guard let m = member(line, name), m.kind == .number else { return nil }
        return Int(String(decoding: line.span(m), as: UTF8.self))
    }
}

extension BatchCommit {
    /// Moves each Kafka partition's stored offset from where the batch's lines continue to
    /// after its last line, first thing in the transaction: the row lock it takes makes a
    /// concurrent commit of the same partition wait, then see the new offset and be fenced.
    /// Throws `KafkaFence` (the transaction rolls back) when the stored offset is not `from`.
    func storeKafkaOffsets(_ conn: PostgresConnection) throws {
        let table = quoteIdentifier(config.kafkaOffsetsTable)
        for file in files {
            guard let span = file.kafka else { continue }
            let params = [span.topic, String(span.partition), String(span.next)]
            let moved: Int
            if let from = span.from {
                moved = try conn.execute(
                    "UPDATE \(table) SET next_offset = $3, updated_at = now() WHERE topic = $1 AND partition = $2 AND next_offset = $4 RETURNING 1",
                    params + [String(from)]
                ).rowCount
            } else {
                moved = try conn.execute(
                    "INSERT INTO \(table) (topic, partition, next_offset) VALUES ($1, $2, $3) ON CONFLICT (topic, partition) DO NOTHING RETURNING 1",
                    params
                ).rowCount
            }
            guard moved == 1 else {
                let stored = try conn.execute(
                    "SELECT next_offset FROM \(table) WHERE topic = $1 AND partition = $2", [span.topic, String(span.partition)])
                throw KafkaFence(
                    topic: span.topic, partition: span.partition, expected: span.from,
                    stored: stored.rowCount > 0 ? stored.value(row: 0, column: 0).flatMap { Int64($0) } : nil)
            }
        }
    }
}

extension KafkaSpan {
    /// The checkpoint row's `file_sha256` for these lines (source_file is NULL).
    var checkpointKey: String { "kafka:\(topic)/\(partition)@\(first)-\(next - 1)" }

    /// Deterministic, so a retried batch rewrites the same dead-letter file.
    var deadLetterName: String {
        let safeTopic = String(topic.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
        return "kafka_\(safeTopic)_\(partition)_\(first)-\(next - 1).ndjson"
    }
}
