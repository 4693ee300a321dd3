import Ingest
import Postgres

/// One COPY of chosen records of a batch, made again from their record lines: binary tuples, or,
/// when a chosen file has a record not in canonical form, text.
enum SelectedRows {
    static func copy(
        _ files: [PendingFile], _ chosen: [RowSelection], sql: LoaderSQL, conn: PostgresConnection, binary: Bool,
        progress: inout IsolationProgress
    ) throws {
        _ = try conn.copyIn(binary ? sql.copyRowsBinary : sql.copyRows) { copy in
            var decoder = LineDecoder()
            let encoder = binary ? TupleEncoder(plan: sql.plan, keyOrdered: false) : nil
            var room = 1 << 12
            var scratch = UnsafeMutableRawPointer.allocate(byteCount: room, alignment: 16)
            defer { scratch.deallocate() }
            var buffer: [UInt8] = binary ? CopyBinary.header : []
            buffer.reserveCapacity(1 << 17)
            var rows = 0
            for i in files.indices {
                // From the record lines, in arrival order (a file's tuples are kept sorted by
                // key): this is the slow path, where rows are chosen by their number.
                try chosen[i].forEachLine(of: files[i]) { _, bytes in
                    let line = try decoder.decode(bytes)
                    if let encoder {
                        if encoder.maxTupleSize(line) > room {
                            room = encoder.maxTupleSize(line)
                            scratch.deallocate()
                            scratch = .allocate(byteCount: room, alignment: 16)
                        }
                        guard let count = encoder.writeRow(from: line, to: scratch) else { throw NotCanonical(file: files[i].name) }
                        buffer.append(contentsOf: UnsafeRawBufferPointer(start: scratch, count: count))
                    } else {
                        CopyText.appendRow(from: line, plan: sql.plan, into: &buffer)
                    }
                    rows += 1
                    if buffer.count >= 1 << 16 {
                        try copy.send(buffer)
                        buffer.removeAll(keepingCapacity: true)
                        progress.advance(by: rows)
                        rows = 0
                    }
                }
            }
            if binary { buffer += CopyBinary.trailer }
            if !buffer.isEmpty { try copy.send(buffer) }
            progress.advance(by: rows)
        }
    }
}

/// A record of a file whose tuples were all made on arrival no longer makes one: an internal
/// error, as the binary path is taken only for files whose every record did.
struct NotCanonical: Error, CustomStringConvertible {
    var file: String?
    var description: String { "internal error: a record of \(file ?? "the batch") has no binary tuple on a second encoding" }
}
