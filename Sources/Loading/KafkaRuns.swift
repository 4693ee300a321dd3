import Ingest
import Logging
import Postgres
import Telemetry

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
///
/// Reader-owned: only the reading thread calls it (its runs are the input building up, and
/// ``PendingFile/add(_:isReject:)`` uses the reader's `TupleEncoder`). A commit thread gets the
/// files ``cut(session:of:)`` handed over and, when fenced, hands them back untouched with the
/// fence; the reader trims them (``fenced(_:in:)``) after the join and commits again, before it
/// cuts that session's next batch.
///
/// Each partition commits in one session, the same for as long as the process runs (the
/// partitions split between the sessions in the order they are first seen), and a session's
/// next batch is cut only after its batch before was joined: so one partition's batches commit
/// in order, one at a time, while the two sessions commit different partitions at once (one
/// session was the Kafka path's limit: its COPYs ran one after another, 3.7 s of the 4.9 s
/// after the group join for 480,000 rows in 24 partitions).
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
        /// Monotonic time the first line held now arrived, for `--max-delay`.
        var heldSince: Double?
        init(from: Int64?) { self.from = from }
    }

    // `@exclusivity(unchecked)`: the reading thread's alone (see the type's comment); read for
    // every line of any stream (`hasLines`), the dynamic check cost ~150 instructions a line.
    @exclusivity(unchecked) private var runs: [Key: Run] = [:]
    /// Each partition's place in the order first seen: its commit session is this modulo the
    /// sessions in use (see the type's comment). Kept across reassignments.
    private var ordinals: [Key: Int] = [:]
    private let spoolLimit: Int
    private let spoolDirectory: String
    private let logger: Logger
    private let tuples: TupleEncoder
    private var redelivered = 0
    private let lag: KafkaLag

    init(spoolLimit: Int, spoolDirectory: String, tuples: TupleEncoder, metrics: LoadMetrics, logger: Logger) {
        self.lag = KafkaLag(metrics: metrics)
        self.spoolLimit = spoolLimit
        self.tuples = tuples
        self.spoolDirectory = spoolDirectory
        self.logger = logger
    }

    var hasLines: Bool { runs.values.contains { ($0.pending?.rowCount ?? 0) > 0 } }

    /// True when partitions that commit in `session` (of `sessions` in use) hold lines.
    func hasLines(session: Int, of sessions: Int) -> Bool {
        runs.contains { key, run in (run.pending?.rowCount ?? 0) > 0 && commitSession(key, of: sessions) == session }
    }

    /// The rows held, and since when the oldest of them waits.
    var held: (rows: Int, since: Double?) {
        runs.values.reduce((0, nil)) { sum, run in
            let rows = run.pending?.rowCount ?? 0
            guard rows > 0 else { return sum }
            return (sum.0 + rows, [sum.1, run.heldSince].compactMap { $0 }.min())
        }
    }

    private func commitSession(_ key: Key, of sessions: Int) -> Int {
        let ordinal =
            ordinals[key]
            ?? {
                let next = ordinals.count
                ordinals[key] = next
                return next
            }()
        return ordinal % max(sessions, 1)
    }

    /// Takes `line` if it is a Kafka line: returns the rows it added (0 or 1), nil if not Kafka.
    func accept(_ line: ProtocolLine, _ bytes: UnsafeRawBufferPointer) throws -> Int? {
        // A line naming a file is a file's line: `consume` replaces any `file` key of a message
        // (docs/protocol.md), and the slot lookup spares every file line the search by name.
        guard line.member(.file) == nil, let topic = string(line, "topic"), let partition = int(line, "partition") else { return nil }
        let key = Key(topic: topic, partition: partition)
        switch line.kind {
        case .other("assigned"):
            assigned(key, next: int(line, "next_offset").map(Int64.init))
            return 0
        case .other("watermarks"):
            return lag.observe(line, key, runs[key])
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
            let file =
                run.pending
                ?? {
                    run.heldSince = monotonicSeconds()
                    return PendingFile(name: nil, spoolLimit: spoolLimit, spoolDirectory: spoolDirectory, tuples: tuples)
                }()
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

    /// Hands the held lines of the partitions that commit in `session` (of `sessions` in use,
    /// whose batch before was joined) over to a commit: each file gets its span, in a fixed
    /// order (so concurrent pipelines lock the offset rows in the same order and cannot
    /// deadlock), and each run goes on from the span's end as if the commit had succeeded. The
    /// lines that arrive meanwhile form the next batch; a fence brought back when the commit is
    /// joined corrects the run (``fenced(_:in:)``). `sessions` falls to 1 only before a second
    /// session ever committed (``CommitSessions``), so no partition changes session while a
    /// batch of it is in flight.
    func cut(session: Int, of sessions: Int) -> [PendingFile] {
        if redelivered > 0 {
            logger.debug("dropped \(redelivered) re-delivered Kafka lines (offsets already held or committed)")
            redelivered = 0
        }
        return runs.keys.sorted().compactMap { key in
            let run = runs[key]!
            guard let file = run.pending, file.rowCount > 0, let last = run.last, commitSession(key, of: sessions) == session else {
                return nil
            }
            let span = KafkaSpan(topic: key.topic, partition: key.partition, from: run.from, next: last + 1, first: run.first ?? last)
            file.kafka = span
            run.from = span.next
            run.pending = nil
            run.first = nil
            run.heldSince = nil
            return file
        }
    }

    /// After a handed-over batch was fenced (rolled back): the fenced partition's lines below
    /// the stored offset are dropped (whoever moved it loaded them) and the rest continue from
    /// it; the batch to commit again is returned, nil when nothing is left. The partition's run,
    /// when it continues from this batch, is trimmed likewise if the stored offset is past the
    /// batch too. If the stored offset went backwards or vanished (reset by hand), the
    /// partition's lines are dropped until it is assigned again.
    func fenced(_ fence: KafkaFence, in files: [PendingFile]) throws -> [PendingFile]? {
        let key = Key(topic: fence.topic, partition: fence.partition)
        guard let index = files.firstIndex(where: { $0.kafka.map { Key(topic: $0.topic, partition: $0.partition) } == key }),
            let span = files[index].kafka
        else { return files }
        var files = files
        let live = runs[key].flatMap { $0.from == span.next && !$0.halted ? $0 : nil }
        guard let stored = fence.stored, fence.expected.map({ stored >= $0 }) ?? true else {
            logger.error(
                "\(fence.description): the stored offset went backwards or vanished (reset by hand?); dropping this partition's lines until it is assigned again"
            )
            files.remove(at: index)
            live?.halted = true
            live?.pending = nil
            return files.isEmpty ? nil : files
        }
        let trimmed = try lines(of: files[index], from: stored)
        if let file = trimmed.file {
            file.kafka = KafkaSpan(topic: span.topic, partition: span.partition, from: stored, next: span.next, first: trimmed.first!)
            files[index] = file
        } else {
            files.remove(at: index)
        }
        var dropped = trimmed.dropped
        var kept = trimmed.kept
        if let live, stored > span.next {
            // Loaded past this whole batch: the lines held since are stale up to there as well.
            let rest = try live.pending.map { try lines(of: $0, from: stored) }
            live.pending = rest?.file
            live.first = rest?.first
            live.from = stored
            if let last = live.last, last < stored - 1 { live.last = stored - 1 }
            dropped += rest?.dropped ?? 0
            kept += rest?.kept ?? 0
        }
        logger.warning("\(fence.description); batch rolled back; \(dropped) lines below \(stored) dropped as already loaded, \(kept) kept")
        return files.isEmpty ? nil : files
    }

    /// `file`'s lines at or above `stored`, in a new file (nil when none is left).
    private func lines(of file: PendingFile, from stored: Int64) throws -> (file: PendingFile?, first: Int64?, dropped: Int, kept: Int) {
        let kept = PendingFile(name: nil, spoolLimit: spoolLimit, spoolDirectory: spoolDirectory, tuples: tuples)
        var decoder = LineDecoder()
        var first: Int64?
        var dropped = 0
        // Records and rejects are held apart, each in offset order.
        for lines in [file.recordLines, file.rejectLines] {
            try lines.forEachLine { bytes in
                guard let line = try? decoder.decode(bytes), let offset = int(line, "offset").map(Int64.init) else { return }
                guard offset >= stored else {
                    dropped += 1
                    return
                }
                try kept.add(line, isReject: line.kind == .reject)
                first = min(first ?? offset, offset)
            }
        }
        return (kept.rowCount > 0 ? kept : nil, first, dropped, kept.rowCount)
    }

    // The protocol's own keys are looked up by `ProtocolLine`; Kafka's are few, found by name.
    private func member(_ line: ProtocolLine, _ name: StaticString) -> JSONMember? {
        // Asked of every line, a file's too: lengths first, then memcmp (`elementsEqual` made
        // this ~200 instructions of load's line).
        let count = name.utf8CodeUnitCount
        return line.members.last { m in
            let key = line.keySpan(m)
            return key.count == count && memcmp(key.baseAddress!, name.utf8Start, count) == 0
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
        let statements = sql.kafkaOffsets
        for file in files {
            guard let span = file.kafka else { continue }
            let params = [span.topic, String(span.partition), String(span.next)]
            let moved: Int
            if let from = span.from {
                moved = try conn.execute(statements.advance, params + [String(from)]).rowCount
            } else {
                moved = try conn.execute(statements.storeFirst, params).rowCount
            }
            guard moved == 1 else {
                // What is stored instead (a fence is rare: the topic's few rows, read as consume reads them).
                let stored = try conn.execute(statements.storedOffsets, [span.topic])
                let offset = (0..<stored.rowCount).first { stored.value(row: $0, column: 0) == String(span.partition) }
                throw KafkaFence(
                    topic: span.topic, partition: span.partition, expected: span.from,
                    stored: offset.flatMap { stored.value(row: $0, column: 1) }.flatMap { Int64($0) })
            }
        }
    }
}

extension KafkaSpan {
    /// The checkpoint row's `file_sha256` for these lines (source_file is NULL).
    var checkpointKey: String { "kafka:\(topic)/\(partition)@\(first)-\(next - 1)" }
}
