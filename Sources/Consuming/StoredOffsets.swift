import Kafka
import Logging
import Posix
import Postgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads the offsets `load` stored in PostgreSQL: for each partition, the next offset to load.
/// They are the only truth about what is loaded; Kafka's committed offsets are not consulted.
public final class StoredOffsets {
    let conninfo: String
    let endpoint: String
    let sql: KafkaOffsetsSQL
    let logger: Logger
    /// Give up after this many failed attempts to reach the server (nil: never).
    let maxRetries: Int?
    private var connection: PostgresConnection?

    /// Named in the connections' application names (may be empty).
    let pipeline: String

    public init(
        conninfo: String, endpoint: String, table: String = "ingest_kafka_offsets", maxRetries: Int? = nil, pipeline: String = "",
        logger: Logger
    ) {
        self.conninfo = conninfo
        self.pipeline = pipeline
        self.endpoint = endpoint
        self.sql = KafkaOffsetsSQL(table: table)
        self.maxRetries = maxRetries
        self.logger = logger
    }

    /// The stored next offset of each of `topic`'s partitions that has one. Retries with
    /// backoff while the server is unreachable; throws on anything permanent.
    public func read(topic: String) throws -> [Int32: Int64] {
        do {
            return try retrying(
                backoff: .database, maxAttempts: maxRetries,
                isRetryable: { ($0 as? PostgresError).map { $0.category == .connection || $0.category == .retry } ?? false },
                onRetry: { error, attempt, wait in
                    self.connection = nil
                    self.logger.warning(
                        "reading stored offsets, \(self.endpoint): \(error); retrying in \(formatSeconds(wait)) (attempt \(attempt))")
                },
                operation: { try query(topic: topic) })
        } catch RetryEnd.gaveUp(_, let last as PostgresError) {
            throw ConsumeError.database(endpoint, last)
        } catch let error as PostgresError {
            throw ConsumeError.database(endpoint, error)
        }
    }

    /// One attempt, no retries: for periodic work that must not stall the consumer.
    public func readOnce(topic: String) throws -> [Int32: Int64] {
        do {
            return try query(topic: topic)
        } catch {
            connection = nil
            throw error
        }
    }

    private func query(topic: String) throws -> [Int32: Int64] {
        let result = try connected().execute(sql.storedOffsets, [topic])
        var offsets: [Int32: Int64] = [:]
        for row in 0..<result.rowCount {
            if let p = result.value(row: row, column: 0).flatMap({ Int32($0) }),
                let next = result.value(row: row, column: 1).flatMap({ Int64($0) })
            {
                offsets[p] = next
            }
        }
        return offsets
    }

    /// Connections made, for their application names.
    private var connectionsMade = 0
    /// This process's token in its application names (as load's: `ingest-consume 3fa9c2d1.0.1`).
    private let run = String(UInt32.random(in: .min ... .max), radix: 16)

    /// With the server-side keepalives and an application name, as every connection of the
    /// pipeline (``SessionStartup``): a session this process gave up on does not linger.
    private func connected() throws -> PostgresConnection {
        if let connection, !connection.isConnectionBad { return connection }
        connectionsMade += 1
        let name = SessionStartup.applicationName(tool: "consume", run: run, session: 0, connection: connectionsMade, pipeline: pipeline)
        let conn = try PostgresConnection(
            conninfo: conninfo, startup: try SessionStartup.parameters(conninfo: conninfo, applicationName: name))
        connection = conn
        return conn
    }
}

/// Why `consume` stopped.
public enum ConsumeError: Error, CustomStringConvertible {
    case database(String, PostgresError)
    case kafka(KafkaError)

    public var description: String {
        switch self {
        case .database(let endpoint, let error): "\(endpoint): \(error.description)"
        case .kafka(let error): error.description
        }
    }
}
