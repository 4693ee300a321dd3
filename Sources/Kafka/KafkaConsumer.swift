import CRdKafka
import Logging

/// A librdkafka high-level consumer, with the partitions' start offsets chosen by the caller
/// (an external offset store): in a consumer group (`subscribe`, at every assignment), or
/// reading partitions it was given (`assign`, no group).
///
/// Knows nothing of what the messages mean. Not thread-safe: one thread polls; the assignment
/// handlers run on that thread, inside `poll`.
public final class KafkaConsumer {
    /// Called at each assignment with the partitions gained: returns where to start each one
    /// (an absent partition starts at its beginning). Throwing leaves them unassigned.
    public typealias AssignHandler = ([TopicPartition]) throws -> [TopicPartition: Int64]
    /// Called when partitions are taken away, before they are.
    public typealias RevokeHandler = ([TopicPartition]) -> Void

    private let handle: OpaquePointer
    private let callbacks: ConsumerCallbacks
    private var closed = false

    /// Creates the consumer: `settings` are librdkafka properties (`bootstrap.servers`,
    /// `group.id`, …), applied after our defaults so a user's `-X` wins.
    public init(settings: [(String, String)], logger: Logger, onAssign: @escaping AssignHandler, onRevoke: @escaping RevokeHandler) throws {
        callbacks = ConsumerCallbacks(logger: logger, onAssign: onAssign, onRevoke: onRevoke)
        let defaults: [(String, String)] = [
            // Offsets live in PostgreSQL; what Kafka holds is never the truth.
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
        ]
        let conf = try makeConfiguration(defaults + settings)
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(callbacks).toOpaque())
        rd_kafka_conf_set_rebalance_cb(conf, rebalanceCallback)
        rd_kafka_conf_set_log_cb(conf, logCallback)
        var errorText = [CChar](repeating: 0, count: 512)
        guard let rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, &errorText, errorText.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError("creating the consumer", message: text(of: errorText))
        }
        handle = rk
        // Rebalances and errors are served by consumer_poll, on the polling thread.
        rd_kafka_poll_set_consumer(rk)
    }

    deinit {
        close()
        rd_kafka_destroy(handle)
    }

    /// Joins the group for `topics`; partitions arrive through the assign handler.
    public func subscribe(_ topics: [String]) throws {
        let list = rd_kafka_topic_partition_list_new(Int32(topics.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for topic in topics { rd_kafka_topic_partition_list_add(list, topic, CRdKafka_PARTITION_UA) }
        let err = rd_kafka_subscribe(handle, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError("subscribing to \(topics.joined(separator: ","))", err) }
    }

    /// Reads `partitions` without joining a group: no rebalance ever moves them, and the
    /// handlers are not called. Each starts at its offset in `starts`, or at its beginning when
    /// absent. (librdkafka still wants a `group.id` to poll, but this does not use the group.)
    public func assign(_ partitions: [TopicPartition], starts: [TopicPartition: Int64]) throws {
        let list = rd_kafka_topic_partition_list_new(Int32(partitions.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for p in partitions {
            rd_kafka_topic_partition_list_add(list, p.topic, p.partition).pointee.offset = starts[p] ?? CRdKafka_OFFSET_BEGINNING
        }
        let err = rd_kafka_assign(handle, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError("assigning partitions", err) }
    }

    /// The next message or consumer event, waiting up to `timeoutMilliseconds`; nil when none.
    /// Assignment handlers run inside this call.
    public func poll(timeoutMilliseconds: Int32) throws -> KafkaMessage? {
        let message = rd_kafka_consumer_poll(handle, timeoutMilliseconds).map(KafkaMessage.init)
        if let error = callbacks.failure {
            callbacks.failure = nil
            throw error
        }
        return message
    }

    /// A fatal client error (the consumer cannot go on), if one happened.
    public var fatalError: KafkaError? {
        var buffer = [CChar](repeating: 0, count: 512)
        let err = rd_kafka_fatal_error(handle, &buffer, buffer.count)
        return err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError("consumer", message: text(of: buffer), code: err.rawValue)
    }

    /// Commits `offsets` (the next offset to read, per partition) to the group in Kafka,
    /// asynchronously: for the usual lag tools only, never read back by us.
    public func commit(_ offsets: [TopicPartition: Int64]) throws {
        guard !offsets.isEmpty else { return }
        let list = rd_kafka_topic_partition_list_new(Int32(offsets.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for (partition, offset) in offsets {
            rd_kafka_topic_partition_list_add(list, partition.topic, partition.partition).pointee.offset = offset
        }
        let err = rd_kafka_commit(handle, list, 1)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError("committing offsets", err) }
    }

    /// Leaves the group at once (its partitions are revoked and reassigned to the others), or
    /// drops an `assign`ed set of partitions.
    public func close() {
        guard !closed else { return }
        closed = true
        _ = rd_kafka_consumer_close(handle)
    }

    /// The partition's low and high watermarks (first offset, offset after the last message).
    public func watermarks(_ partition: TopicPartition, timeoutMilliseconds: Int32 = 10_000) throws -> (low: Int64, high: Int64) {
        var low: Int64 = 0
        var high: Int64 = 0
        let err = rd_kafka_query_watermark_offsets(handle, partition.topic, partition.partition, &low, &high, timeoutMilliseconds)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError("watermarks of \(partition)", err) }
        return (low, high)
    }

    /// The partition's low and high watermarks as of this consumer's last fetch from it, without
    /// asking the broker (librdkafka keeps them from every fetch response; each one is as fresh
    /// as Kafka's own consumer-side lag metric). Nil until a fetch has answered.
    public func cachedWatermarks(_ partition: TopicPartition) -> (low: Int64?, high: Int64)? {
        var low: Int64 = -1
        var high: Int64 = -1
        let err = rd_kafka_get_watermark_offsets(handle, partition.topic, partition.partition, &low, &high)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, high >= 0 else { return nil }
        return (low >= 0 ? low : nil, high)
    }

    /// How many partitions `topic` has, from the cluster's metadata.
    public func partitionCount(_ topic: String, timeoutMilliseconds: Int32 = 10_000) throws -> Int {
        guard let rkt = rd_kafka_topic_new(handle, topic, nil) else { throw KafkaError("topic \(topic)", rd_kafka_last_error()) }
        defer { rd_kafka_topic_destroy(rkt) }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(handle, 0, rkt, &metadata, timeoutMilliseconds)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError("metadata of \(topic)", err) }
        defer { rd_kafka_metadata_destroy(metadata) }
        guard let m = metadata, m.pointee.topic_cnt > 0 else {
            throw KafkaError("metadata of \(topic)", message: "topic not in the answer")
        }
        let entry = m.pointee.topics[0]
        if entry.err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError("metadata of \(topic)", entry.err) }
        return Int(entry.partition_cnt)
    }

    fileprivate static func partitions(of list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> [TopicPartition] {
        (0..<Int(list.pointee.cnt)).map { i in
            let element = list.pointee.elems[i]
            return TopicPartition(topic: String(cString: element.topic), partition: element.partition)
        }
    }
}

/// What the C callbacks reach through librdkafka's opaque pointer.
final class ConsumerCallbacks: @unchecked Sendable {
    let logger: Logger
    let onAssign: KafkaConsumer.AssignHandler
    let onRevoke: KafkaConsumer.RevokeHandler
    /// An assign handler's error, rethrown by the `poll` that ran it.
    var failure: Error?

    init(logger: Logger, onAssign: @escaping KafkaConsumer.AssignHandler, onRevoke: @escaping KafkaConsumer.RevokeHandler) {
        self.logger = logger
        self.onAssign = onAssign
        self.onRevoke = onRevoke
    }
}

private func rebalanceCallback(
    _ rk: OpaquePointer?, _ err: rd_kafka_resp_err_t, _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?,
    _ opaque: UnsafeMutableRawPointer?
) {
    guard let rk, let list, let opaque else { return }
    let callbacks = Unmanaged<ConsumerCallbacks>.fromOpaque(opaque).takeUnretainedValue()
    let cooperative = String(cString: rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE"
    let partitions = KafkaConsumer.partitions(of: list)
    switch err {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        do {
            let starts = try callbacks.onAssign(partitions)
            for i in 0..<Int(list.pointee.cnt) {
                list.pointee.elems[i].offset = starts[partitions[i]] ?? CRdKafka_OFFSET_BEGINNING
            }
        } catch {
            callbacks.failure = error
            if !cooperative { _ = rd_kafka_assign(rk, nil) }
            return
        }
        if cooperative {
            if let failure = rd_kafka_incremental_assign(rk, list) {
                callbacks.failure = KafkaError("assigning partitions", message: String(cString: rd_kafka_error_string(failure)))
                rd_kafka_error_destroy(failure)
            }
        } else {
            let result = rd_kafka_assign(rk, list)
            if result != RD_KAFKA_RESP_ERR_NO_ERROR { callbacks.failure = KafkaError("assigning partitions", result) }
        }
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        callbacks.onRevoke(partitions)
        if cooperative {
            if let failure = rd_kafka_incremental_unassign(rk, list) { rd_kafka_error_destroy(failure) }
        } else {
            _ = rd_kafka_assign(rk, nil)
        }
    default:
        callbacks.logger.error("rebalance failed: \(String(cString: rd_kafka_err2str(err)))")
        if !cooperative { _ = rd_kafka_assign(rk, nil) }
    }
}

/// librdkafka's own log lines, through our logger (syslog levels 0–7).
private func logCallback(_ rk: OpaquePointer?, _ level: Int32, _ facility: UnsafePointer<CChar>?, _ text: UnsafePointer<CChar>?) {
    guard let rk, let opaque = rd_kafka_opaque(rk) else { return }
    let callbacks = Unmanaged<ConsumerCallbacks>.fromOpaque(opaque).takeUnretainedValue()
    let line = "librdkafka \(facility.map { String(cString: $0) } ?? ""): \(text.map { String(cString: $0) } ?? "")"
    switch level {
    case ...3: callbacks.logger.error("\(line)")
    case 4: callbacks.logger.warning("\(line)")
    case 5, 6: callbacks.logger.info("\(line)")
    default: callbacks.logger.debug("\(line)")
    }
}
