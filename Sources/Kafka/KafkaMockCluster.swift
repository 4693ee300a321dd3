import CRdKafka

/// librdkafka's mock cluster: an in-process Kafka that speaks the real protocol over TCP on
/// 127.0.0.1, for tests where no Kafka server exists. Lives as long as this object.
public final class KafkaMockCluster {
    private let handle: OpaquePointer
    private let cluster: OpaquePointer

    /// Starts `brokers` mock brokers and creates `topics` (name, partitions), replication 1.
    public init(brokers: Int, topics: [(String, Int)]) throws {
        // The mock needs a client handle of its own, used for nothing else.
        let conf = try makeConfiguration([("log_level", "3")])
        var errorText = [CChar](repeating: 0, count: 512)
        guard let rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &errorText, errorText.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError("creating the mock cluster's client", message: text(of: errorText))
        }
        guard let mc = rd_kafka_mock_cluster_new(rk, Int32(brokers)) else {
            rd_kafka_destroy(rk)
            throw KafkaError("creating the mock cluster", message: "rd_kafka_mock_cluster_new failed")
        }
        handle = rk
        cluster = mc
        for (name, partitions) in topics {
            let err = rd_kafka_mock_topic_create(mc, name, Int32(partitions), 1)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError("creating topic \(name)", err) }
        }
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(handle)
    }

    /// `127.0.0.1:PORT[,…]`: what clients pass as `bootstrap.servers`.
    public var bootstrapServers: String { String(cString: rd_kafka_mock_cluster_bootstraps(cluster)) }

    /// Takes a broker down (its connections are closed and refused) or brings it back.
    public func setBroker(_ id: Int32, up: Bool) {
        _ = up ? rd_kafka_mock_broker_set_up(cluster, id) : rd_kafka_mock_broker_set_down(cluster, id)
    }
}
