import CRdKafka

/// A librdkafka failure: what we were doing, and librdkafka's own words.
public struct KafkaError: Error, CustomStringConvertible, Sendable {
    public let operation: String
    public let message: String
    /// librdkafka's error code (`rd_kafka_resp_err_t`), 0 when the failure has none.
    public let code: Int32

    public init(_ operation: String, message: String, code: Int32 = 0) {
        self.operation = operation
        self.message = message
        self.code = code
    }

    init(_ operation: String, _ err: rd_kafka_resp_err_t) {
        self.init(operation, message: String(cString: rd_kafka_err2str(err)), code: err.rawValue)
    }

    public var description: String { "\(operation): \(message)" }
}

/// librdkafka settings (`-X key=value`), applied in order; librdkafka checks names and values.
func makeConfiguration(_ settings: [(String, String)]) throws(KafkaError) -> OpaquePointer {
    let conf = rd_kafka_conf_new()!
    var errorText = [CChar](repeating: 0, count: 512)
    for (key, value) in settings {
        if rd_kafka_conf_set(conf, key, value, &errorText, errorText.count) != RD_KAFKA_CONF_OK {
            rd_kafka_conf_destroy(conf)
            throw KafkaError("setting \(key)", message: text(of: errorText))
        }
    }
    return conf
}

/// The NUL-terminated text librdkafka wrote into `buffer` (its error-string out-parameters).
func text(of buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
