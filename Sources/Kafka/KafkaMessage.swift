import CRdKafka

/// A consumed message, owned: its payload stays valid until the message is released.
public final class KafkaMessage {
    let pointer: UnsafeMutablePointer<rd_kafka_message_t>

    init(_ pointer: UnsafeMutablePointer<rd_kafka_message_t>) {
        self.pointer = pointer
    }

    deinit { rd_kafka_message_destroy(pointer) }

    public var topic: String { pointer.pointee.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? "" }
    /// The topic handle, the same for every message of one topic: a key for caching its name.
    public var topicHandle: OpaquePointer? { pointer.pointee.rkt }
    public var partition: Int32 { pointer.pointee.partition }
    public var offset: Int64 { pointer.pointee.offset }

    /// The message value; nil for a null value (a tombstone).
    public var value: UnsafeRawBufferPointer? {
        guard let payload = pointer.pointee.payload else { return nil }
        return UnsafeRawBufferPointer(start: payload, count: pointer.pointee.len)
    }

    /// Set when this is not a message but an event or error from the consumer.
    public var error: KafkaError? {
        let err = pointer.pointee.err
        guard err != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        var message = String(cString: rd_kafka_err2str(err))
        if let payload = pointer.pointee.payload, pointer.pointee.len > 0 {
            message = String(decoding: UnsafeRawBufferPointer(start: payload, count: pointer.pointee.len), as: UTF8.self)
        }
        return KafkaError("consuming \(topic)/\(partition)", message: message, code: err.rawValue)
    }

    /// True for the "reached the end of the partition" event (`enable.partition.eof`).
    public var isPartitionEnd: Bool { pointer.pointee.err == RD_KAFKA_RESP_ERR__PARTITION_EOF }
}

/// A topic's partition and where to start reading it.
public struct TopicPartition: Hashable, Sendable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)/\(partition)" }
}

/// A message's topic name, made into a `String` once per topic handle (consume reads one topic:
/// once per run) instead of once per message.
public struct TopicName {
    private var handle: OpaquePointer?
    private var name = ""

    public init() {}

    public mutating func of(_ message: KafkaMessage) -> String {
        let current = message.topicHandle
        if current != handle || current == nil {
            handle = current
            name = message.topic
        }
        return name
    }
}
