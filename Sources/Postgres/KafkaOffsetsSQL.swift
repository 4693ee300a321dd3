/// The SQL of the Kafka offset store (`ingest_kafka_offsets`, docs/kafka.md), for both of its
/// sides: `consume` reads where each partition starts, `load` moves the offsets in the
/// transaction of their rows. Identifiers are quoted; every value travels as a parameter.
public struct KafkaOffsetsSQL: Sendable {
    /// Each partition of topic `$1` that has a stored offset: `partition, next_offset`.
    public let storedOffsets: String
    /// Moves partition (`$1`, `$2`) to `$3` when it is still at `$4`; a row when it moved (else:
    /// fenced). The row lock it takes holds a concurrent commit of the partition until COMMIT.
    public let advance: String
    /// Stores `$3` for partition (`$1`, `$2`) when nothing was stored; a row when it was stored.
    public let storeFirst: String

    public init(table: String) {
        let table = quoteIdentifier(table)
        storedOffsets = "SELECT partition, next_offset FROM \(table) WHERE topic = $1"
        advance =
            "UPDATE \(table) SET next_offset = $3, updated_at = now() WHERE topic = $1 AND partition = $2 AND next_offset = $4 RETURNING 1"
        storeFirst =
            "INSERT INTO \(table) (topic, partition, next_offset) VALUES ($1, $2, $3) ON CONFLICT (topic, partition) DO NOTHING RETURNING 1"
    }
}
