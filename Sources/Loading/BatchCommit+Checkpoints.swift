import Ingest
import Postgres

extension BatchCommit {
    /// Phase 3: one checkpoint per file that is not skipped (and one for records without
    /// provenance), in the rows' transaction; fills `outcome.files`. Answers each checkpoint's
    /// id by file index, for the dead-letter rows.
    func insertCheckpoints(
        _ conn: PostgresConnection, decisions: FileDecisions, rows: CopiedRows, outcome: inout BatchOutcome
    ) throws -> [Int: String] {
        var checkpointRows:
            [(file: Int, name: String?, bytes: String?, sha: String, loaded: Int, rejected: Int, seen: String?, status: String)] = []
        for (i, file) in files.enumerated() {
            let skipped = decisions.skip[i]
            let excluded = decisions.exclude[i]
            let loaded = excluded ? 0 : rows.loaded[i]
            let rejected = excluded ? 0 : file.rejects + (rows.refused[i]?.count ?? 0)
            let quarantined =
                decisions.quarantinedEarlier[i] ? "quarantined earlier (same name, size and SHA-256)" : skipped ? nil : file.refusal
            outcome.files.append(
                BatchOutcome.File(
                    fingerprint: file.fingerprint, skipped: skipped && decisions.quarantine[i] == nil, loaded: loaded,
                    rejected: skipped ? 0 : rejected, seen: file.marker?.seen, quarantined: quarantined,
                    quarantine: decisions.quarantine[i]))
            guard !skipped else { continue }
            let status = file.refusal == nil ? "committed" : "quarantined"
            if let identity = file.fingerprint {
                checkpointRows.append(
                    (
                        i, identity.name, String(identity.bytes), identity.sha256, rows.loaded[i], rejected, file.marker?.seen?.rfc3339,
                        status
                    ))
            } else {
                let key = file.kafka?.checkpointKey ?? "batch:\(token)"
                checkpointRows.append((i, nil, nil, key, rows.loaded[i], rejected, nil, status))
            }
        }
        var checkpointID: [Int: String] = [:]
        guard !checkpointRows.isEmpty else { return checkpointID }
        let result = try conn.execute(
            sql.insertCheckpoints,
            [
                arrayLiteral(checkpointRows.map(\.name)),
                arrayLiteral(checkpointRows.map(\.bytes)),
                arrayLiteral(checkpointRows.map(\.sha)),
                arrayLiteral(checkpointRows.map { String($0.loaded) }),
                arrayLiteral(checkpointRows.map { String($0.rejected) }),
                arrayLiteral(checkpointRows.map(\.seen)),
                arrayLiteral(checkpointRows.map(\.status)),
                config.pipeline,
                sql.plan.targetTable,
            ])
        for row in 0..<result.rowCount {
            let name = result.value(row: row, column: 1)
            let sha = result.value(row: row, column: 2)
            if let match = checkpointRows.first(where: { $0.name == name && $0.sha == sha }) {
                checkpointID[match.file] = result.value(row: row, column: 0)
            }
        }
        return checkpointID
    }
}
