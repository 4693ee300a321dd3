import Postgres

/// The SQL `load` runs. Identifiers are quoted; every value travels as a parameter.
struct LoaderSQL {
    let table: String
    let checkpoints: String
    let badRecords: String
    let copyRows: String
    let copyRowsBinary: String
    let copyBadRecords: String
    let committedBatch: String
    let insertCheckpoints: String
    /// The ordinals of the probed keys found in the table (`KeyProbe`); nil without a key.
    let existingKeys: String?
    let lockNames: String
    /// How many of the probed keys are in the table; nil without a key.
    let countLoadedKeys: String?
    /// The checkpoints of the batch's file names (`BatchCommit.decideFiles`).
    let committedVersions: String
    /// The contract compiled for the table: columns, formats, key.
    let plan: LoadPlan
    /// The Kafka offset store's statements.
    let kafkaOffsets: KafkaOffsetsSQL

    init(config: LoaderConfiguration, plan: LoadPlan) {
        self.plan = plan
        table = quoteIdentifier(config.table)
        checkpoints = quoteIdentifier(config.checkpointTable)
        badRecords = quoteIdentifier(config.badRecordsTable)
        let columns = plan.names.map { quoteIdentifier($0) }.joined(separator: ", ")
        copyRows = "COPY \(table) (\(columns)) FROM STDIN"
        copyRowsBinary = copyRows + " WITH (FORMAT binary)"
        copyBadRecords =
            "COPY \(badRecords) (source_file, line_number, raw, reasons, checkpoint_id) FROM STDIN"
        // Checkpoints are keyed by table ($1 here, or the last parameter): one checkpoint table
        // serves every contract of a deployment.
        committedBatch = "SELECT 1 FROM \(checkpoints) WHERE target_table = $1 AND source_file IS NULL AND file_sha256 = $2"
        // committed_at = clock_timestamp(): the end of the batch, not now() (its start), so
        // arrival-to-commit delays include the COPY.
        insertCheckpoints = """
            INSERT INTO \(checkpoints) (source_file, file_bytes, file_sha256, rows_loaded, rows_rejected, first_seen, status, pipeline, target_table, committed_at)
            SELECT *, $8::text, $9::text, clock_timestamp() FROM unnest($1::text[], $2::bigint[], $3::text[], $4::int[], $5::int[], $6::timestamptz[], $7::text[])
            RETURNING id, source_file, file_sha256
            """
        // Pipelines sharing a folder serialise on each file name until COMMIT, so the second
        // one sees the first one's checkpoint instead of failing on its unique key. Sorted, so
        // two batches never wait for each other in a cycle.
        lockNames = """
            SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended(n, 7263) AS k FROM unnest($1::text[]) AS n ORDER BY k) AS s
            """
        // Every checkpoint of the batch's names, oldest first, each marked when it is this very
        // file (name, size, SHA-256): one round trip decides both a replay (skipped) and a
        // changed version (quarantined); the unique index's leading columns serve it.
        committedVersions = """
            SELECT f.i, c.file_bytes = f.bytes AND c.file_sha256 = f.sha, c.status, c.file_bytes, c.file_sha256,
                c.committed_at::text, c.rows_loaded + c.rows_rejected
            FROM unnest($2::text[], $3::bigint[], $4::text[]) WITH ORDINALITY AS f(name, bytes, sha, i)
            JOIN \(checkpoints) c ON c.target_table = $1 AND c.source_file = f.name ORDER BY c.committed_at
            """
        kafkaOffsets = KafkaOffsetsSQL(table: config.kafkaOffsetsTable)
        existingKeys = KeyProbe.sql(plan: plan, table: table, select: "u.i")
        countLoadedKeys = KeyProbe.sql(plan: plan, table: table, select: "count(*)")
    }

    /// Every lock wait of a batch is bounded (file locks, Kafka offset rows, keys another
    /// transaction is inserting): a session the server kept after a partition would otherwise
    /// hold them, and this one wait, forever.
    static let boundLockWaits = "SET LOCAL lock_timeout = '\(LockHolders.timeout)'"

    /// Fails with a permanent error (42P01, 42501) when a table is missing or not readable.
    func checkTables(_ conn: PostgresConnection) throws {
        for name in [table, checkpoints, badRecords] {
            _ = try conn.execute("SELECT 1 FROM \(name) LIMIT 0")
        }
    }
}

extension PostgresConnection {
    /// Runs `body` under `SAVEPOINT name`, released when it succeeds. When the server refuses
    /// data (classes 22, 23) the transaction goes back to the savepoint and the error is
    /// rethrown, the transaction still usable; any other error is rethrown as it is.
    func underSavepoint<T>(_ name: String, _ body: () throws -> T) throws -> T {
        _ = try execute("SAVEPOINT \(name)")
        do {
            let value = try body()
            _ = try execute("RELEASE SAVEPOINT \(name)")
            return value
        } catch let error as PostgresError where error.category == .data {
            _ = try execute("ROLLBACK TO SAVEPOINT \(name)")
            throw error
        }
    }
}
