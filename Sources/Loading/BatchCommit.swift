import Ingest
import Logging
import Postgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What one committed batch did, per file.
struct BatchOutcome {
    struct File {
        var fingerprint: FileFingerprint?
        var skipped: Bool
        var loaded: Int
        var rejected: Int
        var seen: UTCTimestamp?
        /// Why the file was refused as a whole by the reject threshold (now or, when skipped, earlier); nil: not refused.
        var quarantined: String?
        /// Not loaded: a changed version of a committed file, to be moved to quarantine.
        var quarantine: QuarantinedFile? = nil
    }
    var files: [File] = []
    /// Dead letters committed, by reason text (for the metrics).
    var rejectReasons: [String: Int] = [:]
    var loaded: Int { files.reduce(0) { $0 + $1.loaded } }
    var rejected: Int { files.reduce(0) { $0 + $1.rejected } }
}

/// The SQL `load` runs. Identifiers are quoted; every value travels as a parameter.
struct LoaderSQL {
    let table: String
    let checkpoints: String
    let badRecords: String
    let copyRows: String
    let copyRowsBinary: String
    let copyBadRecords: String
    let committedFiles: String
    let committedBatch: String
    let insertCheckpoints: String
    /// The ordinals of the probed keys found in the table (`KeyProbe`); nil without a key.
    let existingKeys: String?
    let lockNames: String
    /// How many of the probed keys are in the table; nil without a key.
    let countLoadedKeys: String?
    let committedVersions: String
    /// The contract compiled for the table: columns, formats, key.
    let plan: LoadPlan

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
        committedFiles = """
            SELECT f.i, c.status FROM unnest($2::text[], $3::bigint[], $4::text[]) WITH ORDINALITY AS f(name, bytes, sha, i)
            JOIN \(checkpoints) c ON c.target_table = $1 AND c.source_file = f.name AND c.file_bytes = f.bytes AND c.file_sha256 = f.sha
            """
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
        committedVersions = """
            SELECT f.i, c.file_bytes, c.file_sha256, c.committed_at::text, c.rows_loaded + c.rows_rejected
            FROM unnest($2::text[]) WITH ORDINALITY AS f(name, i)
            JOIN \(checkpoints) c ON c.target_table = $1 AND c.source_file = f.name ORDER BY c.committed_at
            """
        existingKeys = KeyProbe.sql(plan: plan, table: table, select: "u.i")
        countLoadedKeys = KeyProbe.sql(plan: plan, table: table, select: "count(*)")
    }

    /// Fails with a permanent error (42P01, 42501) when a table is missing or not readable.
    func checkTables(_ conn: PostgresConnection) throws {
        for name in [table, checkpoints, badRecords] {
            _ = try conn.execute("SELECT 1 FROM \(name) LIMIT 0")
        }
    }
}

/// One attempt at committing a batch: a single transaction holding the rows, the rejects,
/// the dead-letter rows and the checkpoints. Dead-letter files are written before COMMIT.
struct BatchCommit {
    let sql: LoaderSQL
    let connection: PostgresConnection
    let files: [PendingFile]
    /// Identifies a batch of records without provenance, so a retry after an ambiguous
    /// COMMIT (connection lost while committing) can tell whether it already happened.
    let token: String
    /// When the batch was first tried (`20260130T100132Z`), in its dead-letter file name: fixed
    /// across retries, so a retried batch rewrites its file instead of adding a second one.
    let deadLetterStamp: String
    let config: LoaderConfiguration
    let logger: Logger
    /// Said, and our orphans ended, when a lock wait runs out.
    let holders: LockHolders

    /// A record line kept for the slow path, with where it came from.
    struct Row {
        var file: Int
        var line: [UInt8]
    }

    func run() throws -> BatchOutcome {
        let conn = connection
        _ = try conn.execute("BEGIN")
        do {
            // Every lock wait of the batch is bounded (file locks, Kafka offset rows, event_id
            // keys another transaction is inserting): a session the server kept after a
            // partition would otherwise hold them, and this one wait, forever.
            _ = try conn.execute("SET LOCAL lock_timeout = '\(LockHolders.timeout)'")
            let outcome = try transaction(conn)
            _ = try conn.execute("COMMIT")
            return outcome
        } catch let error as PostgresError where error.sqlstate == LockHolders.lockNotAvailable {
            _ = try? conn.execute("ROLLBACK")
            holders.report(conn, names: files.compactMap { $0.fingerprint?.name })
            throw error
        } catch {
            if !conn.isConnectionBad { _ = try? conn.execute("ROLLBACK") }
            throw error
        }
    }

    private func transaction(_ conn: PostgresConnection) throws -> BatchOutcome {
        try storeKafkaOffsets(conn)
        // 1. Files already committed (seen again) and duplicates within this batch are skipped.
        var skip = [Bool](repeating: false, count: files.count)
        var quarantinedEarlier = [Bool](repeating: false, count: files.count)
        var seenIdentities: Set<FileFingerprint> = []
        var named: [Int] = []
        for (i, file) in files.enumerated() {
            guard let identity = file.fingerprint else { continue }
            if !seenIdentities.insert(identity).inserted {
                skip[i] = true
                continue
            }
            named.append(i)
        }
        if !named.isEmpty {
            _ = try conn.execute(sql.lockNames, [arrayLiteral(named.map { files[$0].fingerprint!.name })])
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
                    skip[named[ordinal - 1]] = true
                    quarantinedEarlier[named[ordinal - 1]] = result.value(row: row, column: 1) == "quarantined"
                }
            }
        }
        // A name committed before with other content: quarantined when it is that file changed.
        var quarantine: [Int: QuarantinedFile] = [:]
        let fresh = named.filter { !skip[$0] }
        if !fresh.isEmpty {
            let result = try conn.execute(
                sql.committedVersions, [sql.plan.targetTable, arrayLiteral(fresh.map { files[$0].fingerprint!.name })])
            for row in 0..<result.rowCount {
                guard let ordinal = result.value(row: row, column: 0).flatMap({ Int($0) }),
                    let bytes = result.value(row: row, column: 1).flatMap({ Int64($0) }),
                    let sha = result.value(row: row, column: 2)
                else { continue }
                let i = fresh[ordinal - 1]
                guard quarantine[i] == nil else { continue }
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
                    quarantine[i] = found
                    skip[i] = true
                }
            }
        }
        if let looseIndex = files.firstIndex(where: { $0.name == nil && $0.kafka == nil }) {
            if try conn.execute(sql.committedBatch, [sql.plan.targetTable, "batch:\(token)"]).rowCount > 0 { skip[looseIndex] = true }
        }

        // A file over the reject threshold commits none of its rows and no dead letters, only
        // its checkpoint (status quarantined); `exclude` is `skip` plus those files.
        let exclude = files.indices.map { skip[$0] || files[$0].refusal != nil }

        // 2. Rows: one COPY under a savepoint; the slow path only when the server refuses.
        var refused: [Int: [(line: [UInt8], reason: RejectReason)]] = [:]
        var loadedPerFile = [Int](repeating: 0, count: files.count)
        if files.indices.contains(where: { !exclude[$0] && files[$0].needsTextPath }) {
            logger.info("a record is not in validate's canonical form; loading this batch as text, row by row if refused")
            try isolate(conn, skip: exclude, refused: &refused, loaded: &loadedPerFile)
        } else {
            _ = try conn.execute("SAVEPOINT rows")
            do {
                // The tuples were made when the records arrived: this only streams them.
                _ = try conn.copyIn(sql.copyRowsBinary) { copy in
                    try copy.send(CopyBinary.header)
                    for (i, file) in files.enumerated() where !exclude[i] {
                        try file.copyRows.forEachChunk { try copy.send($0) }
                    }
                    try copy.send(CopyBinary.trailer)
                }
                _ = try conn.execute("RELEASE SAVEPOINT rows")
                for (i, file) in files.enumerated() where !exclude[i] { loadedPerFile[i] = file.records }
            } catch let error as PostgresError where error.category == .data {
                _ = try conn.execute("ROLLBACK TO SAVEPOINT rows")
                logger.info("the server refused a row (\(error.sqlstate ?? "?")); isolating it")
                try isolate(conn, skip: exclude, refused: &refused, loaded: &loadedPerFile)
            }
        }

        // 3. Checkpoints, one per file (and one for records without provenance).
        var outcome = BatchOutcome()
        var checkpointRows:
            [(file: Int, name: String?, bytes: String?, sha: String, loaded: Int, rejected: Int, seen: String?, status: String)] = []
        for (i, file) in files.enumerated() {
            let rejected = exclude[i] ? 0 : file.rejects + (refused[i]?.count ?? 0)
            let quarantined = quarantinedEarlier[i] ? "quarantined earlier (same name, size and SHA-256)" : skip[i] ? nil : file.refusal
            outcome.files.append(
                BatchOutcome.File(
                    fingerprint: file.fingerprint, skipped: skip[i] && quarantine[i] == nil, loaded: exclude[i] ? 0 : loadedPerFile[i],
                    rejected: skip[i] ? 0 : rejected, seen: file.marker?.seen, quarantined: quarantined, quarantine: quarantine[i]))
            guard !skip[i] else { continue }
            let status = file.refusal == nil ? "committed" : "quarantined"
            if let identity = file.fingerprint {
                checkpointRows.append(
                    (
                        i, identity.name, String(identity.bytes), identity.sha256, loadedPerFile[i], rejected, file.marker?.seen?.rfc3339,
                        status
                    ))
            } else {
                checkpointRows.append((i, nil, nil, file.kafka?.checkpointKey ?? "batch:\(token)", loadedPerFile[i], rejected, nil, status))
            }
        }
        var checkpointID: [Int: String] = [:]
        if !checkpointRows.isEmpty {
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
        }

        // 4. Dead letters: the table (same transaction) and one file per source, written before COMMIT.
        outcome.rejectReasons = try writeDeadLetters(conn, skip: exclude, refused: refused, checkpointID: checkpointID)
        return outcome
    }

    /// Finds the rows the server refuses, in chunks so memory stays bounded: rows whose key
    /// is already in the table are found with one query; the rest by bisection under
    /// savepoints, each refused row getting the server's message.
    private func isolate(
        _ conn: PostgresConnection, skip: [Bool], refused: inout [Int: [(line: [UInt8], reason: RejectReason)]],
        loaded: inout [Int]
    ) throws {
        var decoder = LineDecoder()
        var chunk: [Row] = []
        func key(of row: Row) -> [String]? {
            row.line.withUnsafeBytes { raw in
                guard let line = try? decoder.decode(raw) else { return nil }
                return KeyProbe.key(of: line, plan: sql.plan)
            }
        }
        func present(_ keys: [[String]]) throws -> Set<[String]> { try KeyProbe.present(keys, sql: sql, conn: conn) }
        // Where each key was first met in this batch, and which keys the table held before it:
        // a key the batch itself loaded is a repeat `earlier in this file` (past validate's
        // memory), not one `already in the table` (issue 25: the old reason said so of both).
        var firstFile: [[String]: Int] = [:]
        var inTableBefore: Set<[String]> = []
        func refuseAsDuplicate(_ row: Row, _ key: [String]) {
            let earlier = !inTableBefore.contains(key) && firstFile[key] == row.file
            refused[row.file, default: []].append(
                (row.line, KeyProbe.duplicateReason(key, plan: sql.plan, earlierInFile: earlier)))
        }
        func flush() throws {
            guard !chunk.isEmpty else { return }
            let ids = chunk.map(key(of:))
            let alreadyLoaded = try present(ids.compactMap { $0 })
            // A second row with an id seen earlier in this chunk waits until the first ones are
            // judged: bisecting a chunk for each such duplicate made a file with a few thousand
            // of them take minutes. It is a duplicate only if the earlier row did load.
            var firsts: [Row] = []
            var repeats: [(row: Row, id: [String])] = []
            var seen: Set<[String]> = []
            for (row, id) in zip(chunk, ids) {
                if let id, firstFile[id] == nil {
                    firstFile[id] = row.file
                    if alreadyLoaded.contains(id) { inTableBefore.insert(id) }
                }
                if let id, alreadyLoaded.contains(id) {
                    refuseAsDuplicate(row, id)
                } else if let id, !seen.insert(id).inserted {
                    repeats.append((row, id))
                } else {
                    firsts.append(row)
                }
            }
            try bisect(conn, firsts[...], refused: &refused, loaded: &loaded)
            if !repeats.isEmpty {
                let loadedNow = try present(repeats.map(\.id))
                var rest: [Row] = []
                for (row, id) in repeats {
                    if loadedNow.contains(id) { refuseAsDuplicate(row, id) } else { rest.append(row) }
                }
                try bisect(conn, rest[...], refused: &refused, loaded: &loaded)
            }
            chunk.removeAll(keepingCapacity: true)
        }
        for (i, file) in files.enumerated() where !skip[i] {
            try file.recordLines.forEachLine { bytes in
                chunk.append(Row(file: i, line: Array(bytes)))
                if chunk.count >= 5_000 { try flush() }
            }
        }
        try flush()
    }

    private func bisect(
        _ conn: PostgresConnection, _ rows: ArraySlice<Row>, refused: inout [Int: [(line: [UInt8], reason: RejectReason)]],
        loaded: inout [Int]
    ) throws {
        guard !rows.isEmpty else { return }
        _ = try conn.execute("SAVEPOINT part")
        do {
            _ = try conn.copyIn(sql.copyRows) { copy in
                var decoder = LineDecoder()
                var buffer: [UInt8] = []
                for row in rows {
                    try row.line.withUnsafeBytes { raw in
                        CopyText.appendRow(from: try decoder.decode(raw), plan: sql.plan, into: &buffer)
                    }
                }
                try copy.send(buffer)
            }
            _ = try conn.execute("RELEASE SAVEPOINT part")
            for row in rows { loaded[row.file] += 1 }
        } catch let error as PostgresError where error.category == .data {
            _ = try conn.execute("ROLLBACK TO SAVEPOINT part")
            if rows.count == 1, let row = rows.first {
                let reason: RejectReason
                if error.sqlstate == "23505" {
                    let key = row.line.withUnsafeBytes { raw -> [String]? in
                        var decoder = LineDecoder()
                        return (try? decoder.decode(raw)).flatMap { KeyProbe.key(of: $0, plan: sql.plan) }
                    }
                    reason = KeyProbe.duplicateReason(key, plan: sql.plan)
                } else {
                    reason = RejectReason(field: nil, reason: "database refused the row: \(error.description)")
                }
                refused[row.file, default: []].append((row.line, reason))
                return
            }
            let middle = rows.startIndex + rows.count / 2
            try bisect(conn, rows[rows.startIndex..<middle], refused: &refused, loaded: &loaded)
            try bisect(conn, rows[middle..<rows.endIndex], refused: &refused, loaded: &loaded)
        }
    }

    /// Dead letters, file by file: the NDJSON file, then the table rows in one COPY. Each
    /// pass reads the reject lines again from their spool rather than holding them: a file of
    /// 500,000 rejects must not become 300 MB of memory.
    private func writeDeadLetters(
        _ conn: PostgresConnection, skip: [Bool], refused: [Int: [(line: [UInt8], reason: RejectReason)]],
        checkpointID: [Int: String]
    ) throws -> [String: Int] {
        var decoder = LineDecoder()
        let newline: [UInt8] = [0x0A]
        /// The file's reject lines, then its records the server refused, made rejects.
        func forEachReject(_ i: Int, _ file: PendingFile, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
            try file.rejectLines.forEachLine(body)
            for (record, reason) in refused[i] ?? [] {
                var reject: [UInt8] = []
                record.withUnsafeBytes { raw in
                    if let line = try? decoder.decode(raw) {
                        LineEncoder.appendReject(from: line, reasons: [reason], into: &reject)
                    }
                }
                guard !reject.isEmpty else { continue }
                reject.removeLast()
                try reject.withUnsafeBytes { try body($0) }
            }
        }
        let withRejects = files.indices.filter { !skip[$0] && (files[$0].rejects > 0 || refused[$0] != nil) }
        for i in withRejects {
            let file = files[i]
            try config.badRecords.writeAtomically(deadLetterName(for: file), expectedBytes: file.rejectLines.byteCount) { write in
                try forEachReject(i, file) { line in
                    try write(line)
                    try newline.withUnsafeBytes { try write($0) }
                }
            }
        }
        var tally = RejectReasonTally()
        guard !withRejects.isEmpty else { return tally.counts }
        _ = try conn.copyIn(sql.copyBadRecords) { copy in
            var rows: [UInt8] = []
            for i in withRejects {
                let file = files[i]
                try forEachReject(i, file) { rejectLine in
                    guard let line = try? decoder.decode(rejectLine) else { return }
                    tally.add(line)
                    appendBadRecordRow(line, file: file.name, checkpoint: checkpointID[i], into: &rows)
                    if rows.count >= 1 << 16 {
                        try copy.send(rows)
                        rows.removeAll(keepingCapacity: true)
                    }
                }
            }
            if !rows.isEmpty { try copy.send(rows) }
        }
        return tally.counts
    }

    /// `<source file>.ndjson`; records without provenance get `stdin_<token>.ndjson`; a name that
    /// is not a plain file name never becomes a path.
    private func deadLetterName(for file: PendingFile) -> String {
        if let span = file.kafka { return span.deadLetterName }
        guard let name = file.name else { return "stdin_\(deadLetterStamp)_\(token.prefix(8)).ndjson" }
        if ContainedFolder.problem(with: name + ".ndjson") == nil && !name.hasPrefix(".") { return name + ".ndjson" }
        // Deterministic, so a replay rewrites the same dead-letter file.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in name.utf8 { hash = (hash ^ UInt64(b)) &* 0x100_0000_01b3 }
        return "unsafe-name_\(String(hash, radix: 16)).ndjson"
    }

    private func appendBadRecordRow(_ line: ProtocolLine, file: String?, checkpoint: String?, into out: inout [UInt8]) {
        if let file { CopyText.appendEscaped(file, &out) } else { out.append(contentsOf: CopyText.nullMarker) }
        out.append(0x09)
        if let n = line.lineNumber { CopyText.appendEscaped(String(n), &out) } else { out.append(contentsOf: CopyText.nullMarker) }
        out.append(0x09)
        // raw is text, which holds `\u0000` as six characters: the reject line byte for byte.
        CopyText.appendEscaped(String(decoding: line.bytes, as: UTF8.self), &out)
        out.append(0x09)
        if let m = line.member(.reasons), m.kind == .array {
            CopyText.appendEscaped(jsonbSafe(line.span(m)), &out)
        } else {
            out.append(contentsOf: Array("[]".utf8))
        }
        out.append(0x09)
        if let checkpoint { CopyText.appendEscaped(checkpoint, &out) } else { out.append(contentsOf: CopyText.nullMarker) }
        out.append(0x0A)
    }
}

/// JSON text that jsonb accepts: jsonb refuses the escape `\u0000`, so it becomes U+FFFD (in
/// `reasons` only; `raw` keeps the line exactly).
func jsonbSafe(_ json: UnsafeRawBufferPointer) -> String {
    let text = String(decoding: json, as: UTF8.self)
    // A byte search first: String.contains goes through Foundation, ~45,000 instructions a line.
    guard let base = json.baseAddress else { return text }
    let escape: StaticString = "\\u0000"
    var at = 0
    while at < json.count, let slash = memchr(base + at, 0x5C, json.count - at) {
        let i = base.distance(to: UnsafeRawPointer(slash))
        if i + 6 <= json.count && memcmp(base + i, escape.utf8Start, 6) == 0 {
            return text.replacingAll("\\u0000", with: "\\ufffd")
        }
        at = i + 2  // past the escaped character
    }
    return text
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        // On UTF-8 bytes: no Foundation in load (it maps ICU, ~14 MB resident).
        let bytes = Array(utf8)
        let needle = Array(target.utf8)
        guard !needle.isEmpty, bytes.count >= needle.count else { return self }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if i + needle.count <= bytes.count && bytes[i..<(i + needle.count)].elementsEqual(needle) {
                out += replacement.utf8
                i += needle.count
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
