import Ingest
import Postgres

/// Phase 1 of a batch: which of its files load. Skipped: a file already committed (seen
/// again), the same file twice in the batch, records without provenance whose batch token is
/// committed; quarantined: a changed version of a committed name.
struct FileDecisions {
    var skip: [Bool]
    /// Skipped because it was quarantined earlier (same name, size and SHA-256).
    var quarantinedEarlier: [Bool]
    /// Changed versions of committed files, by index: not loaded, moved to quarantine after.
    var quarantine: [Int: QuarantinedFile] = [:]

    init(count: Int) {
        skip = [Bool](repeating: false, count: count)
        quarantinedEarlier = skip
    }

    /// `skip`, plus the files over the reject threshold: they commit none of their rows and no
    /// dead letters, only their checkpoint (status quarantined).
    var exclude: [Bool] = []
}

extension BatchCommit {
    /// `opening`: the transaction is not begun yet; `BEGIN` and the lock-wait bound go with the
    /// first statements, in one round trip.
    func decideFiles(_ conn: PostgresConnection, opening: Bool) throws -> FileDecisions {
        var decisions = FileDecisions(count: files.count)
        var seenIdentities: Set<FileFingerprint> = []
        var named: [Int] = []
        for (i, file) in files.enumerated() {
            guard let identity = file.fingerprint else { continue }
            if !seenIdentities.insert(identity).inserted {
                decisions.skip[i] = true
                continue
            }
            named.append(i)
        }
        if !named.isEmpty {
            // The look-up is a statement of its own after the locks: under READ COMMITTED it then
            // sees a checkpoint committed by whoever held a lock until just now.
            let opening: [(sql: String, params: [String?])] = opening ? [("BEGIN", []), (LoaderSQL.boundLockWaits, [])] : []
            let results = try conn.executePipelined(
                opening + [
                    (sql.lockNames, [arrayLiteral(named.map { files[$0].fingerprint!.name })]),
                    (
                        sql.committedVersions,
                        [
                            sql.plan.targetTable,
                            arrayLiteral(named.map { files[$0].fingerprint!.name }),
                            arrayLiteral(named.map { String(files[$0].fingerprint!.bytes) }),
                            arrayLiteral(named.map { files[$0].fingerprint!.sha256 }),
                        ]
                    ),
                ])
            try judgeCommittedNames(conn, named: named, versions: results[results.count - 1], &decisions)
        } else if opening {
            try conn.executeScript("BEGIN; \(LoaderSQL.boundLockWaits)")
        }
        if let looseIndex = files.firstIndex(where: { $0.name == nil && $0.kafka == nil }) {
            if try conn.execute(sql.committedBatch, [sql.plan.targetTable, "batch:\(token)"]).rowCount > 0 {
                decisions.skip[looseIndex] = true
            }
        }
        decisions.exclude = files.indices.map { decisions.skip[$0] || files[$0].refusal != nil }
        return decisions
    }

    /// Against the checkpoints of their names (`versions`, read after the name locks): a file whose
    /// checkpoint (table, name, size, SHA-256) exists was committed before and is skipped; a
    /// name committed before with other content is quarantined when it is that file changed,
    /// judged against the oldest such checkpoint.
    private func judgeCommittedNames(
        _ conn: PostgresConnection, named: [Int], versions result: PostgresResult, _ decisions: inout FileDecisions
    ) throws {
        let file = { (row: Int) in result.value(row: row, column: 0).flatMap { Int($0) }.map { named[$0 - 1] } }
        for row in 0..<result.rowCount where result.value(row: row, column: 1) == "t" {
            guard let i = file(row) else { continue }
            decisions.skip[i] = true
            decisions.quarantinedEarlier[i] = result.value(row: row, column: 2) == "quarantined"
        }
        var judged: Set<Int> = []
        for row in 0..<result.rowCount {
            guard let i = file(row), !decisions.skip[i], judged.insert(i).inserted,
                let bytes = result.value(row: row, column: 3).flatMap({ Int64($0) }),
                let sha = result.value(row: row, column: 4)
            else { continue }
            let committed = CommittedVersion(
                bytes: bytes, sha256: sha, committedAt: result.value(row: row, column: 5) ?? "?",
                rows: result.value(row: row, column: 6).flatMap { Int($0) } ?? 0)
            var alreadyLoaded = 0
            if files[i].records > 0 {
                let keys = try ChangedFile.firstKeys(files[i], plan: sql.plan)
                if !keys.isEmpty, let count = sql.countLoadedKeys {
                    let parameters = KeyProbe.parameters(keys, plan: sql.plan)
                    alreadyLoaded = Int(try conn.execute(count, parameters).value(row: 0, column: 0) ?? "") ?? 0
                }
            }
            if let found = ChangedFile.quarantine(files[i], committed: committed, alreadyLoaded: alreadyLoaded) {
                decisions.quarantine[i] = found
                decisions.skip[i] = true
            }
        }
    }
}
