import Ingest
import Postgres

/// What phase 2 did: rows loaded per file, and the records refused, by file.
struct CopiedRows {
    var loaded: [Int]
    var refused: [Int: [RefusedRow]] = [:]
}

/// The server refused a row of the batch's COPY; the transaction is aborted (no savepoint).
struct RowsRefused: Error {
    var error: PostgresError
}

extension BatchCommit {
    /// Phase 2: the rows, in one binary COPY: the tuples were made when the records arrived,
    /// this only merges their sorted runs (``KeyOrderedTuples``) and streams them. No savepoint: when the server refuses a row this throws
    /// ``RowsRefused`` and the batch is tried again in a new transaction with `afterRefusal`,
    /// which goes to the slow path (`Isolation`) at once, as does a batch holding a record not
    /// in canonical form.
    func copyRows(_ conn: PostgresConnection, exclude: [Bool], inFlight: Int, afterRefusal: Bool) throws -> CopiedRows {
        var rows = CopiedRows(loaded: [Int](repeating: 0, count: files.count))
        if afterRefusal { return try isolate(conn, exclude: exclude, afterRefusal: true, inFlight: inFlight) }
        let included = files.indices.filter { !exclude[$0] }
        if included.contains(where: { files[$0].needsTextPath }) {
            logger.info("a record is not in validate's canonical form; loading this batch as text, row by row if refused")
            return try isolate(conn, exclude: exclude, afterRefusal: false, inFlight: inFlight)
        }
        do {
            _ = try conn.copyIn(sql.copyRowsBinary) { copy in
                try copy.send(CopyBinary.header)
                let runs = included.map { files[$0].copyRows }
                if let keyField = runs.first?.keyField {
                    var ordered = KeyOrderedTuples(keyField: keyField)
                    try ordered.send(runs, copy.send)
                } else {
                    for file in runs { try file.forEachChunk { try copy.send($0) } }
                }
                try copy.send(CopyBinary.trailer)
            }
        } catch let error as PostgresError where error.category == .data {
            throw RowsRefused(error: error)
        }
        for i in included { rows.loaded[i] = files[i].records }
        return rows
    }

    private func isolate(_ conn: PostgresConnection, exclude: [Bool], afterRefusal: Bool, inFlight: Int) throws -> CopiedRows {
        var isolation = Isolation(batch: self, conn: conn, exclude: exclude, inFlight: inFlight)
        try isolation.run(afterRefusal: afterRefusal)
        return isolation.rows
    }
}
