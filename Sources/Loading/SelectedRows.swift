import Ingest
import Postgres

/// One COPY of chosen records of a batch: their binary tuples, made when they arrived, walked
/// tuple by tuple so the others are left out; or, when a chosen file has a record not in
/// canonical form, as text made from the record lines.
enum SelectedRows {
    static func copy(
        _ files: [PendingFile], _ chosen: [RowSelection], sql: LoaderSQL, conn: PostgresConnection, binary: Bool,
        progress: inout IsolationProgress
    ) throws {
        if binary {
            _ = try conn.copyIn(sql.copyRowsBinary) { copy in
                try copy.send(CopyBinary.header)
                for i in files.indices where !chosen[i].isEmpty {
                    var walker = TupleWalker(chosen[i])
                    try files[i].copyRows.forEachChunk { chunk in
                        try walker.feed(chunk) { try copy.send($0) }
                        progress.advance(by: walker.takeChosenPassed())
                    }
                    guard walker.isAtTupleStart, walker.tuples == files[i].records else {
                        throw TupleWalker.Mismatch(tuples: walker.tuples, records: files[i].records)
                    }
                }
                try copy.send(CopyBinary.trailer)
            }
            return
        }
        _ = try conn.copyIn(sql.copyRows) { copy in
            var decoder = LineDecoder()
            var buffer: [UInt8] = []
            var rows = 0
            for i in files.indices {
                try chosen[i].forEachLine(of: files[i]) { _, bytes in
                    CopyText.appendRow(from: try decoder.decode(bytes), plan: sql.plan, into: &buffer)
                    rows += 1
                    if buffer.count >= 1 << 16 {
                        try copy.send(buffer)
                        buffer.removeAll(keepingCapacity: true)
                        progress.advance(by: rows)
                        rows = 0
                    }
                }
            }
            if !buffer.isEmpty { try copy.send(buffer) }
            progress.advance(by: rows)
        }
    }
}

/// Walks a file's binary COPY tuples (`copyRows`: each a field count, then per field a length
/// and that many bytes, -1 for NULL) across the spool's chunks, passing on the bytes of the
/// chosen tuples only, in runs as long as the chunks allow.
struct TupleWalker {
    struct Mismatch: Error, CustomStringConvertible {
        var tuples: Int
        var records: Int
        var description: String { "internal error: \(tuples) COPY tuples for \(records) records" }
    }

    private var cursor: RowSelection.Cursor
    /// Tuples walked past so far.
    private(set) var tuples = 0
    private var chosenPassed = 0
    private var keep: Bool
    /// Fields of the current tuple still to come; -1: its field count comes next.
    private var fieldsLeft = -1
    /// Bytes of the big-endian integer being read still to come, and its value so far.
    private var need = 2
    private var value: UInt32 = 0
    /// Bytes of a field's value still to skip.
    private var skip = 0

    init(_ selection: RowSelection) {
        cursor = RowSelection.Cursor(selection)
        keep = cursor.contains(0)
    }

    var isAtTupleStart: Bool { fieldsLeft == -1 && need == 2 && skip == 0 }

    /// Chosen tuples passed on since the last call.
    mutating func takeChosenPassed() -> Int {
        defer { chosenPassed = 0 }
        return chosenPassed
    }

    mutating func feed(_ chunk: UnsafeRawBufferPointer, _ send: (UnsafeRawBufferPointer) throws -> Void) throws {
        let n = chunk.count
        var runStart = 0
        var i = 0
        while i < n {
            if skip > 0 {
                let step = min(skip, n - i)
                i += step
                skip -= step
            } else {
                value = value << 8 | UInt32(chunk[i])
                i += 1
                need -= 1
                guard need == 0 else { continue }
                if fieldsLeft < 0 {
                    fieldsLeft = Int(Int16(truncatingIfNeeded: value))
                } else {
                    let length = Int32(bitPattern: value)
                    fieldsLeft -= 1
                    if length > 0 { skip = Int(length) }
                }
                value = 0
                need = 4
            }
            guard skip == 0 && fieldsLeft == 0 else { continue }
            // The tuple ends at i.
            if keep { chosenPassed += 1 }
            tuples += 1
            fieldsLeft = -1
            need = 2
            let next = cursor.contains(tuples)
            if keep && !next && i > runStart { try send(UnsafeRawBufferPointer(rebasing: chunk[runStart..<i])) }
            if !keep && next { runStart = i }
            keep = next
        }
        if keep && n > runStart { try send(UnsafeRawBufferPointer(rebasing: chunk[runStart..<n])) }
    }
}
