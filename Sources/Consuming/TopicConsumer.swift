import Ingest
import Kafka
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What `consume` reads and how.
public struct ConsumerConfiguration: Sendable {
    public var brokers: String
    public var topic: String
    /// A consumer group to join, or the partitions to read without one.
    public var assignment: PartitionAssignment
    /// librdkafka properties from `-X key=value`, applied last.
    public var settings: [(String, String)] = []
    /// Stop once every assigned partition has been read to its end.
    public var exitAtEnd = false
    /// How often the stored offsets of the assigned partitions are copied to the group's
    /// committed offsets in Kafka, for lag tools (seconds; 0: never). Without a group (static
    /// partitions), only when `-X group.id=…` names one to copy them under.
    public var kafkaCommitInterval: Double = 5
    /// The contract message keys are mapped through (`source` names → column names).
    public var contract: Contract = .ecommerceEvents
    /// How often each assigned partition's watermarks are written as a `watermarks` line, for
    /// `load`'s lag gauge (milliseconds).
    public var watermarksIntervalMilliseconds: Int64 = 1000

    public init(brokers: String, topic: String, assignment: PartitionAssignment) {
        self.brokers = brokers
        self.topic = topic
        self.assignment = assignment
    }

    /// The `group.id` of a consumer reading static partitions: librdkafka polls only with one,
    /// but it is never joined, and nothing is committed under it (`-X group.id=…` replaces it).
    static let unjoinedGroup = "ingest-consume-unjoined"

    /// The librdkafka properties: ours, then the user's.
    var clientSettings: [(String, String)] {
        var all = [("bootstrap.servers", brokers), ("group.id", group ?? Self.unjoinedGroup)]
        if exitAtEnd {
            // A batch run ends when every partition reports its end, which takes a fetch that
            // finds nothing; brokers (the mock cluster too) hold such a fetch for
            // fetch.wait.max.ms (500 ms by default) before answering it.
            all += [("enable.partition.eof", "true"), ("fetch.wait.max.ms", "100")]
        }
        return all + settings
    }

    /// The group joined, if any.
    var group: String? {
        if case .group(let id) = assignment { id } else { nil }
    }

    /// The partitions read, as far as known before asking the brokers (a group: all).
    var selection: PartitionSelection {
        if case .partitions(let selection) = assignment { selection } else { .all }
    }

    /// Whether the stored offsets are copied to Kafka: in a group, every interval; with static
    /// partitions, only under a group the user named (the internal one is no one's to show).
    var copiesOffsetsToKafka: Bool {
        kafkaCommitInterval > 0 && (group != nil || settings.contains { $0.0 == "group.id" })
    }
}

/// Totals over a run, for the final log line.
public struct ConsumerTotals: Sendable {
    public var messages = 0
    public var records = 0
    public var rejects = 0
    public var assignments = 0
}

/// The source stage for Kafka: joins the consumer group (or assigns itself the selected
/// partitions, with no group), starts each assigned partition at the offset stored in
/// PostgreSQL, and writes every message as a protocol line to `fd`.
///
/// Before a partition's first message after each assignment it writes an `assigned` line with
/// the stored offset, so `load` knows where the run of offsets it receives begins.
public final class TopicConsumer {
    let config: ConsumerConfiguration
    let offsets: StoredOffsets
    let logger: Logger
    public private(set) var totals = ConsumerTotals()
    private var assigned: Set<TopicPartition> = []
    private var atEnd: Set<TopicPartition> = []

    public init(config: ConsumerConfiguration, offsets: StoredOffsets, logger: Logger) {
        self.config = config
        self.offsets = offsets
        self.logger = logger
    }

    /// Consumes until the first SIGINT/SIGTERM (see `Interrupts`), the reader of `fd` goes away,
    /// or (with `exitAtEnd`) every assigned partition is read to its end. Leaves the group
    /// cleanly before returning, so its partitions move to the other pipelines at once.
    /// Throws ``PartitionSelectionError`` when static partitions name one the topic lacks.
    public func run(fd: Int32) throws {
        let output = ByteOutput(fd: fd)
        let consumer = try makeConsumer(writingTo: output)
        defer { consumer.close() }
        try start(consumer, writingTo: output)

        var lines = MessageLines(contract: config.contract)
        var lastKafkaCommit = monotonicMilliseconds()
        var lastWatermarks = monotonicMilliseconds()
        // The topic's name, made once per topic handle rather than once per message.
        var topicName = TopicName()
        // Timed work (Kafka commits, watermarks) is checked when the stream pauses and every
        // 256 messages, not per message: reading the clock per message was 6 % of consume's time.
        var sinceClock = 0
        func timedWork() {
            sinceClock = 0
            let now = monotonicMilliseconds()
            if config.copiesOffsetsToKafka && Double(now - lastKafkaCommit) >= config.kafkaCommitInterval * 1000 {
                lastKafkaCommit = now
                commitStoredOffsets(consumer)
            }
            if now - lastWatermarks >= config.watermarksIntervalMilliseconds {
                lastWatermarks = now
                appendWatermarks(consumer, into: &output.bytes)
            }
        }
        while Interrupts.received == 0 {
            // Lines leave when 64 KiB are buffered or when nothing more is queued: a pause in
            // the stream never holds a line back, and a busy stream is written in large writes.
            var next = try consumer.poll(timeoutMilliseconds: 0)
            if next == nil {
                timedWork()
                try output.flush()
                next = try consumer.poll(timeoutMilliseconds: 100)
            }
            guard let message = next else {
                try output.flush()
                if readerIsGone(fd) {
                    logger.info("the reader of stdout went away; stopping")
                    return
                }
                if config.exitAtEnd && !assigned.isEmpty && atEnd == assigned {
                    appendWatermarks(consumer, into: &output.bytes)
                    try output.flush()
                    logger.info("every assigned partition read to its end")
                    break
                }
                continue
            }
            let topic = topicName.of(message)
            if message.isPartitionEnd {
                atEnd.insert(TopicPartition(topic: topic, partition: message.partition))
                continue
            }
            if let error = message.error {
                if let fatal = consumer.fatalError { throw ConsumeError.kafka(fatal) }
                // Brokers down, leaders moving: librdkafka retries on its own.
                logger.warning("\(error.description)")
                continue
            }
            if !atEnd.isEmpty { atEnd.remove(TopicPartition(topic: topic, partition: message.partition)) }
            totals.messages += 1
            if lines.append(topic: topic, partition: message.partition, offset: message.offset, value: message.value, into: &output.bytes) {
                totals.records += 1
            } else {
                totals.rejects += 1
                logger.debug("\(topic)/\(message.partition)@\(message.offset): message value is not a JSON object; written as a reject")
            }
            if output.bytes.count >= output.flushThreshold { try output.flush() }
            sinceClock += 1
            if sinceClock >= 256 { timedWork() }
        }
        try output.flush()
    }

    /// Joins the group (partitions come through the handlers), or assigns the selected partitions
    /// at once at their stored offsets: no join to wait for, no rebalance later.
    private func start(_ consumer: KafkaConsumer, writingTo output: ByteOutput) throws {
        let topic = config.topic
        guard case .partitions(let selection) = config.assignment else {
            try consumer.subscribe([topic])
            logger.info("group \(config.group ?? ""), topic \(topic), brokers \(config.brokers)")
            return
        }
        let partitions = try selection.partitions(of: topic, count: consumer.partitionCount(topic))
        logger.info("partitions \(selection) of topic \(topic) (no group joined), brokers \(config.brokers)")
        try consumer.assign(partitions, starts: try announce(partitions, client: consumer, output: output))
    }

    /// The group member, with the handlers that say each assignment on `output` (an `assigned`
    /// line per partition, from the offsets stored in PostgreSQL) and forget revoked partitions.
    private func makeConsumer(writingTo output: ByteOutput) throws -> KafkaConsumer {
        // The handlers run inside the consumer's poll; they ask it for watermarks.
        weak var client: KafkaConsumer?
        let consumer = try KafkaConsumer(
            settings: config.clientSettings, logger: logger,
            onAssign: { [unowned self] partitions in try announce(partitions, client: client, output: output) },
            onRevoke: { [unowned self] partitions in
                try? output.flush()
                guard !partitions.isEmpty else { return }
                for p in partitions {
                    assigned.remove(p)
                    atEnd.remove(p)
                }
                logger.info("revoked \(partitions.map(\.description).sorted().joined(separator: ", "))")
            })
        client = consumer
        return consumer
    }

    /// Writes an `assigned` line for each of `partitions`, from the offsets stored in PostgreSQL,
    /// and flushes them; returns where each partition starts (absent: at its beginning).
    private func announce(_ partitions: [TopicPartition], client: KafkaConsumer?, output: ByteOutput) throws -> [TopicPartition: Int64] {
        let topic = config.topic
        let stored = try offsets.read(topic: topic)
        var starts: [TopicPartition: Int64] = [:]
        var described: [String] = []
        for p in partitions.sorted(by: { $0.partition < $1.partition }) {
            let next = p.topic == topic ? stored[p.partition] : nil
            MessageLines.appendAssigned(p, nextOffset: next, into: &output.bytes)
            if let next { starts[p] = next }
            described.append(next.map { "\(p) at \($0)" } ?? Self.fromTheBeginning(p, client))
            assigned.insert(p)
            atEnd.remove(p)
        }
        totals.assignments += 1
        try output.flush()
        logger.info("assigned \(described.joined(separator: ", "))")
        return starts
    }

    /// A `watermarks` line for each assigned partition whose watermarks a fetch has told.
    private func appendWatermarks(_ consumer: KafkaConsumer, into out: inout [UInt8]) {
        for p in assigned.sorted(by: { ($0.topic, $0.partition) < ($1.topic, $1.partition) }) {
            guard let marks = consumer.cachedWatermarks(p) else { continue }
            MessageLines.appendWatermarks(p, low: marks.low, high: marks.high, into: &out)
        }
    }

    /// "p from the beginning (no stored offset)", and where that beginning is when retention
    /// already cut the log: the messages before it were never seen by this pipeline, and the
    /// log is the only place a user can learn it.
    static func fromTheBeginning(_ p: TopicPartition, _ consumer: KafkaConsumer?) -> String {
        let plain = "\(p) from the beginning (no stored offset)"
        guard let marks = try? consumer?.watermarks(p, timeoutMilliseconds: 2_000) else { return plain }
        guard marks.low > 0 else { return plain }
        return
            "\(p) from the beginning (no stored offset) at its low watermark \(marks.low): offsets 0…\(marks.low - 1) were removed by retention before this pipeline read them"
    }

    /// Copies what PostgreSQL says is loaded to Kafka's committed offsets, so the usual lag
    /// tools (kafka-consumer-groups.sh, Burrow) show the loading lag. Best effort: a failure
    /// is logged at debug level and tried again next time.
    private func commitStoredOffsets(_ consumer: KafkaConsumer) {
        guard !assigned.isEmpty else { return }
        do {
            let stored = try offsets.readOnce(topic: config.topic)
            var commit: [TopicPartition: Int64] = [:]
            for p in assigned where p.topic == config.topic {
                if let next = stored[p.partition] { commit[p] = next }
            }
            try consumer.commit(commit)
        } catch {
            logger.debug("copying stored offsets to Kafka: \(error)")
        }
    }

    /// True when `fd` is a pipe whose reader has closed it: an idle consumer would otherwise
    /// hold its partitions forever after the rest of its pipeline died.
    private func readerIsGone(_ fd: Int32) -> Bool {
        var entry = pollfd(fd: fd, events: 0, revents: 0)
        return poll(&entry, 1, 0) == 1 && (entry.revents & Int16(POLLERR | POLLHUP)) != 0
    }
}

/// One partition's lag: how far the stored offset is behind the partition's high watermark.
public struct PartitionLag: Sendable {
    public var partition: TopicPartition
    public var nextOffset: Int64?
    public var lowWatermark: Int64
    public var highWatermark: Int64
    /// Messages not loaded yet; never negative (see ``isPastHighWatermark``).
    public var lag: Int64 { max(0, highWatermark - max(nextOffset ?? lowWatermark, lowWatermark)) }
    /// The stored offset is beyond what the broker reports (a broker behind, a topic recreated):
    /// the lag is shown as 0, with a warning.
    public var isPastHighWatermark: Bool { (nextOffset ?? 0) > highWatermark }

    /// Measures every partition of `config.topic` (with static partitions, the selected ones)
    /// without joining the group.
    public static func measure(config: ConsumerConfiguration, offsets: StoredOffsets, logger: Logger) throws -> [PartitionLag] {
        let consumer = try KafkaConsumer(settings: config.clientSettings, logger: logger, onAssign: { _ in [:] }, onRevoke: { _ in })
        let partitions = try config.selection.partitions(of: config.topic, count: consumer.partitionCount(config.topic))
        let stored = try offsets.read(topic: config.topic)
        return try partitions.map { partition in
            let marks = try consumer.watermarks(partition)
            let next = stored[partition.partition]
            let lag = PartitionLag(partition: partition, nextOffset: next, lowWatermark: marks.low, highWatermark: marks.high)
            if lag.isPastHighWatermark, let next {
                logger.warning(
                    "\(partition): the stored next offset \(next) is past the broker's high watermark \(marks.high) (a broker behind, or the topic recreated); lag shown as 0"
                )
            }
            return lag
        }
    }

    /// `{"topic":…,"partition":…,"next_offset":…,"low_watermark":…,"high_watermark":…,"lag":…}`
    public func appendLine(into out: inout [UInt8]) {
        var w = JSONWriter()
        w.beginObject(&out)
        w.key("topic", &out)
        w.string(partition.topic, &out)
        w.key("partition", &out)
        w.int(Int(partition.partition), &out)
        w.key("next_offset", &out)
        if let nextOffset { w.int(Int(nextOffset), &out) } else { w.null(&out) }
        w.key("low_watermark", &out)
        w.int(Int(lowWatermark), &out)
        w.key("high_watermark", &out)
        w.int(Int(highWatermark), &out)
        w.key("lag", &out)
        w.int(Int(lag), &out)
        w.endLine(&out)
    }
}
