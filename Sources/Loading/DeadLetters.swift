import Ingest
import Postgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension BatchCommit {
    /// Phase 4: dead letters, file by file: the NDJSON file, then the table rows in one COPY.
    /// Each pass reads the reject lines again from their spool rather than holding them: a file
    /// of 500,000 rejects must not become 300 MB of memory.
    func writeDeadLetters(
        _ conn: PostgresConnection, skip: [Bool], refused: [Int: [RefusedRow]], checkpointID: [Int: String]
    ) throws -> [String: Int] {
        var decoder = LineDecoder()
        let newline: [UInt8] = [0x0A]
        /// The file's reject lines, then its records the server refused, made rejects.
        func forEachReject(_ i: Int, _ file: PendingFile, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
            try file.rejectLines.forEachLine(body)
            for row in refused[i] ?? [] {
                var reject: [UInt8] = []
                row.line.withUnsafeBytes { raw in
                    if let line = try? decoder.decode(raw) {
                        LineEncoder.appendReject(from: line, reasons: [row.reason], into: &reject)
                    }
                }
                guard !reject.isEmpty else { continue }
                reject.removeLast()
                try reject.withUnsafeBytes { try body($0) }
            }
        }
        let withRejects = files.indices.filter { !skip[$0] && (files[$0].rejects > 0 || refused[$0] != nil) }
        // One dead-letter file per name: a source file's own, or the batch's one for all its
        // Kafka partitions. Each file costs two fsyncs (~8 ms here); a Kafka batch of 24
        // partitions wrote 24 files, and the 48 fsyncs were most of its commit.
        var byName: [(name: String, files: [Int])] = []
        var at: [String: Int] = [:]
        let kafkaName = kafkaDeadLetterName
        for i in withRejects {
            let name = files[i].kafka != nil ? kafkaName : deadLetterName(for: files[i])
            if let group = at[name] {
                byName[group].files.append(i)
            } else {
                at[name] = byName.count
                byName.append((name, [i]))
            }
        }
        for (name, indices) in byName {
            let bytes = indices.reduce(0) { $0 + files[$1].rejectLines.byteCount }
            try config.badRecords.writeAtomically(name, expectedBytes: bytes) { write in
                for i in indices {
                    try forEachReject(i, files[i]) { line in
                        try write(line)
                        try newline.withUnsafeBytes { try write($0) }
                    }
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

    /// `<source file>.ndjson`; records without provenance get `stdin_<stamp>_<token>.ndjson`, and
    /// a batch's Kafka lines, of every partition, `kafka_<topic>_<stamp>_<token>.ndjson`; a name
    /// that is not a plain file name never becomes a path.
    func deadLetterName(for file: PendingFile) -> String {
        if file.kafka != nil { return kafkaDeadLetterName }
        guard let name = file.name else { return "stdin_\(deadLetterStamp)_\(token.prefix(8)).ndjson" }
        if ContainedFolder.problem(with: name + ".ndjson") == nil && !name.hasPrefix(".") { return name + ".ndjson" }
        // Deterministic, so a replay rewrites the same dead-letter file.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in name.utf8 { hash = (hash ^ UInt64(b)) &* 0x100_0000_01b3 }
        return "unsafe-name_\(String(hash, radix: 16)).ndjson"
    }

    /// The one dead-letter file of the batch's Kafka lines: each line names its topic, partition
    /// and offset. Fixed for the batch (its stamp and token), so a retry, or the batch committed
    /// again after a fence, rewrites the same file.
    var kafkaDeadLetterName: String {
        let topics = Set(files.compactMap { $0.kafka?.topic })
        // The topic when there is one (Kafka allows letters, digits, `.`, `_`, `-` in its names).
        let topic = topics.count == 1 ? String(topics.first!.map { $0.isLetter || $0.isNumber || "._-".contains($0) ? $0 : "_" }) + "_" : ""
        return "kafka_\(topic)\(deadLetterStamp)_\(token.prefix(8)).ndjson"
    }

    func appendBadRecordRow(_ line: ProtocolLine, file: String?, checkpoint: String?, into out: inout [UInt8]) {
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
