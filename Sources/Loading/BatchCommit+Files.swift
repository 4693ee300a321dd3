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
    func decideFiles(_ conn: PostgresConnection) throws -> FileDecisions {
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
            _ = try conn.execute(sql.lockNames, [arrayLiteral(named.map { files[$0].fingerprint!.name })])
            try skipCommitted(conn, named: named, &decisions)
            try quarantineChangedVersions(conn, fresh: named.filter { !decisions.skip[$0] }, &decisions)
        }
        if let looseIndex = files.firstIndex(where: { $0.name == nil && $0.kafka == nil }) {
            if try conn.execute(sql.committedBatch, [sql.plan.targetTable, "batch:\(token)"]).rowCount > 0 {
                decisions.skip[looseIndex] = true
            }
        }
        decisions.exclude = files.indices.map { decisions.skip[$0] || files[$0].refusal != nil }
        return decisions
    }

    /// Files whose checkpoint (table, name, size, SHA-256) exists: committed before.
    private func skipCommitted(_ conn: PostgresConnection, named: [Int], _ decisions: inout FileDecisions) throws {
        let result = try conn.execute(
            sql.committedFiles,
            [
                sql.plan.targetTable,
                arrayLiteral(named.map { files[$0].fingerprint!.name }),
                arrayLiteral(named.map { String(files[$0].fingerprint!.bytes) }),
                arrayLiteral(named.map { files[$0].fingerprint!.sha256 }),
            ])
        for row in 0..<result.rowCount {
            if let ordinal = result.value(row: row, column: 0).flatMap({ Int($0) }) {
                decisions.skip[named[ordinal - 1]] = true
                decisions.quarantinedEarlier[named[ordinal - 1]] = result.value(row: row, column: 1) == "quarantined"
            }
        }
    }

    /// A name committed before with other content: quarantined when it is that file changed.
    private func quarantineChangedVersions(_ conn: PostgresConnection, fresh: [Int], _ decisions: inout FileDecisions) throws {
        guard !fresh.isEmpty else { return }
        let result = try conn.execute(
            sql.committedVersions, [sql.plan.targetTable, arrayLiteral(fresh.map { files[$0].fingerprint!.name })])
        for row in 0..<result.rowCount {
            guard let ordinal = result.value(row: row, column: 0).flatMap({ Int($0) }),
                let bytes = result.value(row: row, column: 1).flatMap({ Int64($0) }),
                let sha = result.value(row: row, column: 2)
            else { continue }
            let i = fresh[ordinal - 1]
            guard decisions.quarantine[i] == nil else { continue }
            let committed = CommittedVersion(
                bytes: bytes, sha256: sha, committedAt: result.value(row: row, column: 3) ?? "?",
                rows: result.value(row: row, column: 4).flatMap { Int($0) } ?? 0)
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
