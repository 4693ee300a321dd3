import Ingest
import Postgres

/// Phase 2's slow path: finds the records the server refuses, so that the rest of the batch
/// loads and each refused record becomes a reject with its reason. Cheapest step first:
///
/// 1. Repeats within the batch, in memory (`RepeatedKeys`): a record whose key an earlier
///    record of the batch has is set aside. These are what `validate` lets through past its
///    per-file memory (250,000 keys), so a big file's repeats are found here.
/// 2. The rest in one COPY under a savepoint. Only if the server refuses again (a key the table
///    held before, another constraint), in chunks of 5,000 rows: keys already in the table found
///    with one probe per chunk (`KeyProbe`), the rest by bisection under savepoints, each refused
///    row getting the server's message.
/// 3. A set-aside repeat is a duplicate when its first row loaded: `duplicate event_id (earlier
///    in this file, line N)` (`(already in the table)` when the first row is another file's).
///    Repeats whose first row was refused go through the steps again, the earliest of each key
///    then being the first.
///
/// Issue 25: a 200 MB file with 8,182 ids repeated past validate's memory spent 70–90 s in
/// probes and bisection (each 5,000-row chunk probed and copied again as text); step 1 and one
/// COPY make it a few seconds (docs/performance.md). Runs on the committing thread; owns its
/// state, the batch's spools only read.
struct Isolation {
    let batch: BatchCommit
    let conn: PostgresConnection
    /// What phase 2 reports: rows loaded per file, and the records refused.
    private(set) var rows: CopiedRows
    /// Per file, the indexes (among its records) of those refused.
    private var refusedIndexes: [Set<Int>]
    private var selection: [RowSelection]
    private var progress: IsolationProgress

    /// A record line kept while its chunk is judged, with where it came from.
    private struct Row {
        var file: Int
        var index: Int
        var line: [UInt8]
    }

    init(batch: BatchCommit, conn: PostgresConnection, exclude: [Bool], inFlight: Int) {
        self.batch = batch
        self.conn = conn
        rows = CopiedRows(loaded: [Int](repeating: 0, count: batch.files.count))
        refusedIndexes = batch.files.map { _ in [] }
        selection = batch.files.indices.map { exclude[$0] || batch.files[$0].records == 0 ? .none : .all }
        let total = zip(batch.files, selection).reduce(0) { $0 + $1.1.count(of: $1.0.records) }
        progress = IsolationProgress(
            metrics: batch.config.metrics, inFlight: inFlight, logger: batch.logger, files: batch.fileNames, rows: total)
    }

    private var files: [PendingFile] { batch.files }
    private var plan: LoadPlan { batch.sql.plan }

    /// `afterRefusal`: a COPY of the whole batch was refused (else it is the text path, and no
    /// COPY has been tried yet).
    mutating func run(afterRefusal: Bool) throws {
        var tryAtOnce = !afterRefusal
        while selection.contains(where: { !$0.isEmpty }) {
            progress.begin("looking for keys repeated within the batch", left: progress.left)
            let repeats = try RepeatedKeys.find(in: files, selection, plan: plan, progress: &progress)
            var firsts = selection
            for (i, list) in repeats.byFile.enumerated() where !list.isEmpty {
                firsts[i] = selection[i].removing(list.map(\.row))
            }
            if repeats.count > 0 {
                batch.logger.info(
                    "\(batch.fileNames): \(repeats.count) records repeat the key of an earlier record of the batch; set aside, the rest copied at once"
                )
                // The refusal may have been those repeats alone: the rest is worth one COPY.
                tryAtOnce = true
            }
            if tryAtOnce { try copyAtOnce(firsts) } else { try copyInChunks(firsts) }
            selection = judge(repeats)
            tryAtOnce = true
        }
        progress.finish(refused: rows.refused.values.reduce(0) { $0 + $1.count })
    }

    /// Step 3: repeats whose first row loaded are refused; the others are the next selection.
    private mutating func judge(_ repeats: RepeatedKeys) -> [RowSelection] {
        var again = files.map { _ in [Int]() }
        for list in repeats.byFile {
            for r in list {
                if refusedIndexes[r.firstFile].contains(r.firstRow) {
                    again[r.file].append(r.row)
                } else {
                    let reason = KeyProbe.duplicateReason(
                        r.key, plan: plan, earlierInFile: r.firstFile == r.file, earlierLine: r.firstLine,
                        withoutFile: files[r.file].name == nil && files[r.file].kafka == nil)
                    refuse(file: r.file, index: r.row, line: r.line, reason)
                }
            }
        }
        progress.advance(by: repeats.count - again.reduce(0) { $0 + $1.count })
        return again.map { $0.isEmpty ? .none : .only($0) }
    }

    private mutating func refuse(file: Int, index: Int, line: [UInt8], _ reason: RejectReason) {
        rows.refused[file, default: []].append(RefusedRow(line: line, reason: reason))
        refusedIndexes[file].insert(index)
    }

    /// Step 2, the hopeful half: the selected rows in one COPY (binary unless a file needs text).
    private mutating func copyAtOnce(_ chosen: [RowSelection]) throws {
        let count = zip(files, chosen).reduce(0) { $0 + $1.1.count(of: $1.0.records) }
        guard count > 0 else { return }
        let left = progress.left
        progress.begin("copying \(count) rows in one COPY", left: left)
        let binary = !files.indices.contains { !chosen[$0].isEmpty && files[$0].needsTextPath }
        do {
            try conn.underSavepoint("rows") {
                try SelectedRows.copy(files, chosen, sql: batch.sql, conn: conn, binary: binary, progress: &progress)
            }
            for i in files.indices { rows.loaded[i] += chosen[i].count(of: files[i].records) }
        } catch let error as PostgresError where error.category == .data {
            batch.logger.info(
                "\(batch.fileNames): the server refused a row of those \(count) too (\(error.sqlstate ?? "?")); isolating by probe and bisection"
            )
            progress.begin("probing and bisecting", left: left)
            try copyInChunks(chosen, restart: false)
        }
    }

    /// Step 2, the sure half: chunks of 5,000 rows, probed for keys already in the table, the
    /// rest bisected under savepoints.
    private mutating func copyInChunks(_ chosen: [RowSelection], restart: Bool = true) throws {
        if restart { progress.begin("probing and bisecting", left: progress.left) }
        var chunk: [Row] = []
        chunk.reserveCapacity(5_000)
        for i in files.indices where !chosen[i].isEmpty {
            try chosen[i].forEachLine(of: files[i]) { index, bytes in
                chunk.append(Row(file: i, index: index, line: Array(bytes)))
                if chunk.count >= 5_000 { try judgeChunk(&chunk) }
            }
        }
        try judgeChunk(&chunk)
    }

    private mutating func judgeChunk(_ chunk: inout [Row]) throws {
        guard !chunk.isEmpty else { return }
        var decoder = LineDecoder()
        let plan = self.plan
        let keys = chunk.map { row in
            row.line.withUnsafeBytes { raw in (try? decoder.decode(raw)).flatMap { KeyProbe.key(of: $0, plan: plan) } }
        }
        let inTable = try KeyProbe.present(keys.compactMap { $0 }, sql: batch.sql, conn: conn)
        var rest: [Row] = []
        for (row, key) in zip(chunk, keys) {
            if let key, inTable.contains(key) {
                refuse(file: row.file, index: row.index, line: row.line, KeyProbe.duplicateReason(key, plan: plan))
            } else {
                rest.append(row)
            }
        }
        progress.advance(by: chunk.count - rest.count)
        try bisect(rest[...])
        chunk.removeAll(keepingCapacity: true)
    }

    private mutating func bisect(_ part: ArraySlice<Row>) throws {
        guard !part.isEmpty else { return }
        do {
            try conn.underSavepoint("part") {
                _ = try conn.copyIn(batch.sql.copyRows) { copy in
                    var decoder = LineDecoder()
                    var buffer: [UInt8] = []
                    for row in part {
                        try row.line.withUnsafeBytes { raw in
                            CopyText.appendRow(from: try decoder.decode(raw), plan: plan, into: &buffer)
                        }
                    }
                    try copy.send(buffer)
                }
            }
            for row in part { rows.loaded[row.file] += 1 }
            progress.advance(by: part.count)
        } catch let error as PostgresError where error.category == .data {
            if part.count == 1, let row = part.first {
                let reason: RejectReason
                if error.sqlstate == "23505" {
                    let key = row.line.withUnsafeBytes { raw -> [String]? in
                        var decoder = LineDecoder()
                        return (try? decoder.decode(raw)).flatMap { KeyProbe.key(of: $0, plan: plan) }
                    }
                    reason = KeyProbe.duplicateReason(key, plan: plan)
                } else {
                    reason = RejectReason(field: nil, reason: "database refused the row: \(error.description)")
                }
                refuse(file: row.file, index: row.index, line: row.line, reason)
                progress.advance(by: 1)
                return
            }
            progress.tick()
            let middle = part.startIndex + part.count / 2
            try bisect(part[part.startIndex..<middle])
            try bisect(part[middle..<part.endIndex])
        }
    }
}
