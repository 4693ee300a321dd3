/// Why a row was rejected: the field it concerns (nil for the whole row), what is wrong, and
/// the value as received.
public struct RejectReason: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var field: String?
    public var reason: String
    public var value: String?

    public init(field: String?, reason: String, value: String? = nil) {
        self.field = field
        self.reason = reason
        self.value = value
    }

    public init(_ field: EventField, _ reason: String, value: String? = nil) {
        self.init(field: field.name, reason: reason, value: value)
    }

    /// `price: must be > 0 (got "-12.50")`
    public var description: String {
        var text = field.map { "\($0): \(reason)" } ?? reason
        if let value { text += " (got \(quotedForMessage(value)))" }
        return text
    }

    /// The reason without its value: the key `--summary` counts by.
    public var summaryKey: String { field.map { "\($0): \(reason)" } ?? reason }
}

/// Quotes a value for a one-line message: escaped like JSON, cut at 80 characters.
public func quotedForMessage(_ value: String) -> String {
    var bytes: [UInt8] = []
    let shown = value.count > 80 ? String(value.prefix(80)) + "…" : value
    JSONWriter.appendString(shown, &bytes)
    return String(decoding: bytes, as: UTF8.self)
}

/// The end-of-file marker: a file was read completely, and this is its fingerprint.
///
/// `load` checkpoints a file by (`file`, `bytes`, `sha256`) in the same transaction as its rows,
/// so a file seen twice is loaded once; `inode` and `mtime_ns` (when present) let it check,
/// without reading, that the file is still the version read before archiving it.
public struct FileMarker: Equatable, Sendable {
    public var fingerprint: FileFingerprint
    /// Data rows read (records plus rejects), not counting the header or blank lines.
    public var rows: Int
    /// When the reader first saw the file complete.
    public var seen: UTCTimestamp?
    /// Why the reader refuses the file as a whole (a header the contract cannot map, UTF-16):
    /// `load` quarantines it with this reason instead of loading it.
    public var refused: String?

    public init(fingerprint: FileFingerprint, rows: Int, seen: UTCTimestamp?) {
        self.fingerprint = fingerprint
        self.rows = rows
        self.seen = seen
    }

    public init(file: String, rows: Int, bytes: Int64, sha256: String, seen: UTCTimestamp?) {
        self.init(fingerprint: FileFingerprint(name: file, bytes: bytes, sha256: sha256), rows: rows, seen: seen)
    }

    public var file: String {
        get { fingerprint.name }
        set { fingerprint.name = newValue }
    }
    public var bytes: Int64 { fingerprint.bytes }
    /// Lowercase hex SHA-256 of the file's bytes as read.
    public var sha256: String { fingerprint.sha256 }

    /// Reads a marker from a scanned `eof` line; nil when a required key is missing. Markers
    /// without `inode`/`mtime_ns` (older writers) are accepted; a `seen` that is not a valid
    /// instant is dropped.
    public init?(_ line: ProtocolLine) {
        guard let file = line.file, let rows = line.int(.rows), let bytes = line.int(.bytes),
            let sha = line.string(.sha256)
        else { return nil }
        let inode = line.int(.inode).flatMap { $0 >= 0 ? UInt64($0) : nil }
        let fingerprint = FileFingerprint(
            name: file, bytes: Int64(bytes), sha256: sha, inode: inode, modifiedNanoseconds: line.int(.mtimeNs).map(Int64.init))
        self.init(fingerprint: fingerprint, rows: rows, seen: line.string(.seen).flatMap { UTCTimestamp(parsing: $0) })
        // Rare (one per refused file), so found by name rather than given a protocol key slot.
        for m in line.members.reversed() where m.kind == .string {
            let key = line.keySpan(m)
            if key.count == 7 && key.elementsEqual("refused".utf8) {
                refused = line.withStringBytes(m) { String(decoding: $0, as: UTF8.self) }
                break
            }
        }
    }

    public static func == (a: FileMarker, b: FileMarker) -> Bool {
        a.fingerprint == b.fingerprint && a.fingerprint.inode == b.fingerprint.inode
            && a.fingerprint.modifiedNanoseconds == b.fingerprint.modifiedNanoseconds && a.rows == b.rows && a.seen == b.seen
            && a.refused == b.refused
    }
}

/// Writes the protocol's lines into a byte buffer.
public enum LineEncoder {
    /// `{"kind":"record","file":…,"line":…,<fields>}` — fields as raw strings, as read from CSV.
    ///
    /// The whole line is written into capacity reserved once for its worst case (every byte a
    /// 6-byte escape): `watch`'s hot path, ~1,000 fewer instructions per row than appending key
    /// by key (callgrind). Rows too long for such a reservation take the key-by-key writer.
    public static func appendRecord(
        file: String?, line: Int?, fields: [(EventField, UnsafeRawBufferPointer)], into out: inout [UInt8]
    ) {
        // `{"kind":"record","file":"…","line":<20 digits>}` and a newline: 60 bytes.
        var bound = 60 + (file?.utf8.count ?? 0) * 6
        for (_, value) in fields { bound += 21 + value.count * 6 }  // `,"event_timestamp":""` is 21
        guard bound <= 1 << 16 else {
            appendRecordByKeys(file: file, line: line, fields: fields, into: &out)
            return
        }
        guard var file else {
            appendRecord(file: nil, line: line, fields: fields, bound: bound, into: &out)
            return
        }
        file.withUTF8 { appendRecord(file: UnsafeRawBufferPointer($0), line: line, fields: fields, bound: bound, into: &out) }
    }

    @inline(__always)
    private static func appendRecord(
        file: UnsafeRawBufferPointer?, line: Int?, fields: [(EventField, UnsafeRawBufferPointer)], bound: Int, into out: inout [UInt8]
    ) {
        out.appendReserved(maxCount: bound) { w in
            w.bytes("{\"kind\":\"record\"")
            if let file {
                w.bytes(",\"file\":")
                w.string(file)
            }
            if let line {
                w.bytes(",\"line\":")
                w.int(line)
            }
            for (field, value) in fields {
                w.memberKey(field.key)
                w.string(value)
            }
            w.byte(UInt8(ascii: "}"))
            w.byte(0x0A)
        }
    }

    /// The record of a CSV row whose fields lie back to back in `fieldBytes`, field i ending
    /// at `fieldEnds[i]`: `watch`'s per-row call, with no array of field spans built per row.
    static func appendRecord(
        file: UnsafeRawBufferPointer, line: Int, columns: UnsafeBufferPointer<(EventField, Int)>, fieldBytes: UnsafeRawBufferPointer,
        fieldEnds: UnsafeBufferPointer<Int>, into out: inout [UInt8]
    ) {
        @inline(__always) func value(_ column: Int) -> UnsafeRawBufferPointer {
            let start = column == 0 ? 0 : fieldEnds[column - 1]
            return UnsafeRawBufferPointer(rebasing: fieldBytes[start..<fieldEnds[column]])
        }
        var bound = 60 + file.count * 6
        for (_, column) in columns { bound += 21 + value(column).count * 6 }
        guard bound <= 1 << 16 else {
            let fields = columns.map { ($0.0, value($0.1)) }
            appendRecordByKeys(file: String(decoding: file, as: UTF8.self), line: line, fields: fields, into: &out)
            return
        }
        out.appendReserved(maxCount: bound) { w in
            w.bytes("{\"kind\":\"record\",\"file\":")
            w.string(file)
            w.bytes(",\"line\":")
            w.int(line)
            for (field, column) in columns {
                w.memberKey(field.key)
                w.string(value(column))
            }
            w.byte(UInt8(ascii: "}"))
            w.byte(0x0A)
        }
    }

    /// The record of a CSV row keyed by a contract's columns: `columns` holds (contract column,
    /// CSV column) pairs and `keyPrefixes[c]` the `,"name":` text of contract column c.
    static func appendRecord(
        file: UnsafeRawBufferPointer, line: Int, columns: UnsafeBufferPointer<(Int, Int)>, keyPrefixes: [[UInt8]],
        fieldBytes: UnsafeRawBufferPointer, fieldEnds: UnsafeBufferPointer<Int>, into out: inout [UInt8]
    ) {
        @inline(__always) func value(_ column: Int) -> UnsafeRawBufferPointer {
            let start = column == 0 ? 0 : fieldEnds[column - 1]
            return UnsafeRawBufferPointer(rebasing: fieldBytes[start..<fieldEnds[column]])
        }
        var bound = 60 + file.count * 6
        for (c, column) in columns { bound += keyPrefixes[c].count + 2 + value(column).count * 6 }
        guard bound <= 1 << 16 else {
            var w = JSONWriter()
            w.beginObject(&out)
            w.key(ProtocolKey.kind.name, &out)
            out.append(contentsOf: staticRecord)
            appendProvenance(&w, file: String(decoding: file, as: UTF8.self), line: line, &out)
            for (c, column) in columns {
                out.append(contentsOf: keyPrefixes[c])
                JSONWriter.appendString(value(column), &out)
            }
            out.append(UInt8(ascii: "}"))
            out.append(0x0A)
            return
        }
        out.appendReserved(maxCount: bound) { w in
            w.bytes("{\"kind\":\"record\",\"file\":")
            w.string(file)
            w.bytes(",\"line\":")
            w.int(line)
            for (c, column) in columns {
                keyPrefixes[c].withUnsafeBytes { w.bytes($0.baseAddress!, $0.count) }
                w.string(value(column))
            }
            w.byte(UInt8(ascii: "}"))
            w.byte(0x0A)
        }
    }

    /// The record of a CSV row by a file's `RecordTemplate`: `watch`'s per-row call. The parts
    /// every row of the file shares (`"kind"`, `"file"`, the keys) were encoded once per file.
    static func appendRecord(
        _ template: RecordTemplate, line: Int, fieldBytes: UnsafeRawBufferPointer, fieldEnds: UnsafeBufferPointer<Int>,
        into out: inout [UInt8]
    ) {
        template.head.withUnsafeBytes { head in
            template.keys.withUnsafeBytes { keys in
                template.keyEnds.withUnsafeBufferPointer { keyEnds in
                    template.sourceColumns.withUnsafeBufferPointer { sources in
                        @inline(__always) func value(_ column: Int) -> UnsafeRawBufferPointer {
                            let start = column == 0 ? 0 : fieldEnds[column - 1]
                            return UnsafeRawBufferPointer(start: fieldBytes.baseAddress! + start, count: fieldEnds[column] - start)
                        }
                        // The head, the line number (≤ 20 digits), the keys, each value's closing
                        // quote, `}` and the newline; each value escaped at most 6 bytes a byte.
                        var bound = head.count + 20 + keys.count + sources.count + 2
                        for column in sources { bound += value(column).count * 6 }
                        guard bound <= 1 << 16 else {
                            template.file.withUnsafeBytes { file in
                                template.columns.withUnsafeBufferPointer { columns in
                                    appendRecord(
                                        file: file, line: line, columns: columns, keyPrefixes: template.keyPrefixes,
                                        fieldBytes: fieldBytes, fieldEnds: fieldEnds, into: &out)
                                }
                            }
                            return
                        }
                        out.appendReserved(maxCount: bound) { w in
                            w.bytes(head.baseAddress!, head.count)
                            w.int(line)
                            var keyStart = 0
                            for k in 0..<sources.count {
                                w.bytes(keys.baseAddress! + keyStart, keyEnds[k] - keyStart)
                                keyStart = keyEnds[k]
                                w.escaped(value(sources[k]))
                                w.byte(UInt8(ascii: "\""))
                            }
                            w.byte(UInt8(ascii: "}"))
                            w.byte(0x0A)
                        }
                    }
                }
            }
        }
    }

    /// The same line as `appendRecord`, written key by key (no worst-case reservation).
    static func appendRecordByKeys(
        file: String?, line: Int?, fields: [(EventField, UnsafeRawBufferPointer)], into out: inout [UInt8]
    ) {
        var w = JSONWriter()
        w.beginObject(&out)
        w.key(ProtocolKey.kind.name, &out)
        out.append(contentsOf: staticRecord)
        appendProvenance(&w, file: file, line: line, &out)
        for (field, value) in fields {
            w.key(field.key, &out)
            w.string(value, &out)
        }
        w.endLine(&out)
    }

    /// A reject for a row that could not be read as fields: its raw text and reasons.
    public static func appendRawReject(
        file: String?, line: Int?, raw: UnsafeRawBufferPointer, reasons: [RejectReason], into out: inout [UInt8]
    ) {
        var w = beginReject(&out)
        appendProvenance(&w, file: file, line: line, &out)
        appendRaw(raw, &w, &out)
        w.key("reasons", &out)
        appendReasons(reasons, &out)
        w.endLine(&out)
    }

    /// A reject made from a scanned line: every member kept as received (unknown keys too),
    /// `kind` set to `reject`, and `reasons` appended to any the line already had.
    public static func appendReject(from line: ProtocolLine, reasons: [RejectReason], into out: inout [UInt8]) {
        var w = beginReject(&out)
        let kindMember = line.member(.kind)
        let reasonsMember = line.member(.reasons)
        for m in line.members {
            if let k = kindMember, k.keyStart == m.keyStart { continue }
            if let r = reasonsMember, r.keyStart == m.keyStart { continue }
            w.rawKey(line.keySpan(m), &out)
            w.raw(line.span(m), &out)
        }
        w.key("reasons", &out)
        if let r = reasonsMember, r.kind == .array, r.valueEnd - r.valueStart > 2 {
            // Keep earlier reasons, then ours.
            let existing = line.span(r)
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: existing[0..<(existing.count - 1)]))
            for reason in reasons {
                out.append(UInt8(ascii: ","))
                appendReason(reason, &out)
            }
            out.append(UInt8(ascii: "]"))
        } else {
            appendReasons(reasons, &out)
        }
        w.endLine(&out)
    }

    /// A reject for a line that is not valid JSON: its text, repaired to UTF-8 if needed.
    public static func appendMalformedLine(
        _ raw: UnsafeRawBufferPointer, lineNumber: Int?, problem: String, into out: inout [UInt8]
    ) {
        var w = beginReject(&out)
        if let lineNumber {
            w.key("input_line", &out)
            w.int(lineNumber, &out)
        }
        appendRaw(raw, &w, &out)
        w.key("reasons", &out)
        appendReasons([RejectReason(field: nil, reason: "malformed JSON: \(problem)")], &out)
        w.endLine(&out)
    }

    /// Why a line over the reader's limit is a reject (its text is not kept).
    public static func overlongReason(limit: Int) -> RejectReason {
        RejectReason(field: nil, reason: "line longer than \(limit) bytes")
    }

    /// `{"kind":"reject","input_line":…,"byte_count":…,"reasons":[…]}`: a line longer than
    /// `limit`, with its size only. validate and load both write this one form.
    public static func appendOverlongLine(byteCount: Int, limit: Int, inputLine: Int, into out: inout [UInt8]) {
        var w = beginReject(&out)
        w.key("input_line", &out)
        w.int(inputLine, &out)
        w.key("byte_count", &out)
        w.int(byteCount, &out)
        w.key("reasons", &out)
        appendReasons([overlongReason(limit: limit)], &out)
        w.endLine(&out)
    }

    /// `{"kind":"eof","file":…,"rows":…,"bytes":…,"sha256":…,"seen":…,"inode":…,"mtime_ns":…}`
    public static func appendMarker(_ marker: FileMarker, into out: inout [UInt8]) {
        var w = beginLine(kind: "eof", into: &out)
        w.key("file", &out)
        w.string(marker.file, &out)
        w.key("rows", &out)
        w.int(marker.rows, &out)
        w.key("bytes", &out)
        w.int(Int(marker.bytes), &out)
        w.key("sha256", &out)
        w.string(marker.sha256, &out)
        if let seen = marker.seen {
            w.key("seen", &out)
            w.string(seen.rfc3339, &out)
        }
        if let inode = marker.fingerprint.inode, let mtime = marker.fingerprint.modifiedNanoseconds {
            w.key("inode", &out)
            w.int(Int(truncatingIfNeeded: inode), &out)
            w.key("mtime_ns", &out)
            w.int(Int(mtime), &out)
        }
        if let refused = marker.refused {
            w.key("refused", &out)
            w.string(refused, &out)
        }
        w.endLine(&out)
    }

    /// `{"kind":"abandon","file":…,"reason":…}`: the lines sent for `file` since its last
    /// marker are not a complete file (it changed while being read); `load` drops them, and
    /// the file is read again whole.
    public static func appendAbandon(file: String, reason: String, into out: inout [UInt8]) {
        var w = beginLine(kind: "abandon", into: &out)
        w.key("file", &out)
        w.string(file, &out)
        w.key("reason", &out)
        w.string(reason, &out)
        w.endLine(&out)
    }

    public static func appendReasons(_ reasons: [RejectReason], _ out: inout [UInt8]) {
        out.append(UInt8(ascii: "["))
        for (i, reason) in reasons.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            appendReason(reason, &out)
        }
        out.append(UInt8(ascii: "]"))
    }

    static func appendReason(_ reason: RejectReason, _ out: inout [UInt8]) {
        var w = JSONWriter()
        w.beginObject(&out)
        w.key("field", &out)
        if let field = reason.field { w.string(field, &out) } else { w.null(&out) }
        w.key("reason", &out)
        w.string(reason.reason, &out)
        if let value = reason.value {
            w.key("value", &out)
            w.string(value, &out)
        }
        w.endObject(&out)
    }

    /// `{"kind":"<kind>"`: how every protocol line begins; the writer returned goes on with the
    /// line's other members (`w.key(…)`, then `w.endLine(&out)`).
    public static func beginLine(kind: String, into out: inout [UInt8]) -> JSONWriter {
        var w = JSONWriter()
        w.beginObject(&out)
        w.key(ProtocolKey.kind.name, &out)
        w.string(kind, &out)
        return w
    }

    /// `{"kind":"reject"` — ``beginLine(kind:into:)`` for the hot path: the kind's text is
    /// a constant, not escaped per line.
    static func beginReject(_ out: inout [UInt8]) -> JSONWriter {
        var w = JSONWriter()
        w.beginObject(&out)
        w.key(ProtocolKey.kind.name, &out)
        out.append(contentsOf: staticReject)
        return w
    }

    /// `"raw":"…"`: the text as received, repaired to valid UTF-8 if needed (JSON is UTF-8).
    /// A repaired text is followed by `"raw_base64":"…"`, the bytes exactly as received, so a
    /// dead letter never loses them.
    static func appendRaw(_ raw: UnsafeRawBufferPointer, _ w: inout JSONWriter, _ out: inout [UInt8]) {
        w.key("raw", &out)
        if let repaired = repairedUTF8(raw) {
            repaired.withUnsafeBytes { w.string($0, &out) }
            w.key("raw_base64", &out)
            base64(raw).withUnsafeBytes { w.string($0, &out) }
        } else {
            w.string(raw, &out)
        }
    }

    static func appendProvenance(_ w: inout JSONWriter, file: String?, line: Int?, _ out: inout [UInt8]) {
        if let file {
            w.key("file", &out)
            w.string(file, &out)
        }
        if let line {
            w.key("line", &out)
            w.int(line, &out)
        }
    }
}

private let staticRecord: [UInt8] = Array("\"record\"".utf8)
private let staticReject: [UInt8] = Array("\"reject\"".utf8)

extension ProtocolLine {
    /// The reasons a reject line carries, decoded (slow path: for logs, summaries, dead letters).
    public func reasons() -> [RejectReason] {
        guard let m = member(.reasons), m.kind == .array else { return [] }
        return decodeReasons(span(m))
    }
}

/// Decodes a JSON array of reason objects; tolerant of missing keys.
func decodeReasons(_ json: UnsafeRawBufferPointer) -> [RejectReason] {
    // Reasons are small and rare; reuse the object scanner on each element.
    var result: [RejectReason] = []
    let p = json.bindMemory(to: UInt8.self)
    var i = 1
    var depth = 0
    var inString = false
    var elementStart = -1
    while i < p.count - 1 {
        let b = p[i]
        if inString {
            if b == UInt8(ascii: "\\") { i += 2; continue }
            if b == UInt8(ascii: "\"") { inString = false }
        } else if b == UInt8(ascii: "\"") {
            inString = true
        } else if b == UInt8(ascii: "{") {
            if depth == 0 { elementStart = i }
            depth += 1
        } else if b == UInt8(ascii: "}") {
            depth -= 1
            if depth == 0 && elementStart >= 0 {
                let element = UnsafeRawBufferPointer(rebasing: json[elementStart...i])
                var scanner = JSONObjectScanner()
                if (try? scanner.scan(element)) != nil {
                    var field: String?
                    var reason = ""
                    var value: String?
                    let line = ProtocolLine(bytes: element, members: scanner.members)
                    for m in scanner.members {
                        let key = String(decoding: line.keySpan(m), as: UTF8.self)
                        let text: String? =
                            m.kind == .string
                            ? line.withStringBytes(m) { String(decoding: $0, as: UTF8.self) }
                            : (m.kind == .null ? nil : String(decoding: line.span(m), as: UTF8.self))
                        switch key {
                        case "field": field = text
                        case "reason": reason = text ?? ""
                        case "value": value = text
                        default: break
                        }
                    }
                    result.append(RejectReason(field: field, reason: reason, value: value))
                }
                elementStart = -1
            }
        }
        i += 1
    }
    return result
}

/// Standard base64 (RFC 4648, padded), for bytes that JSON text cannot carry.
public func base64(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    var out: [UInt8] = []
    out.reserveCapacity((bytes.count + 2) / 3 * 4)
    var i = 0
    while i < bytes.count {
        let b0 = UInt32(bytes[i])
        let b1 = i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0
        let b2 = i + 2 < bytes.count ? UInt32(bytes[i + 2]) : 0
        let n = b0 << 16 | b1 << 8 | b2
        out.append(alphabet[Int(n >> 18 & 63)])
        out.append(alphabet[Int(n >> 12 & 63)])
        out.append(i + 1 < bytes.count ? alphabet[Int(n >> 6 & 63)] : UInt8(ascii: "="))
        out.append(i + 2 < bytes.count ? alphabet[Int(n & 63)] : UInt8(ascii: "="))
        i += 3
    }
    return out
}

/// What every record of one CSV file shares, encoded once per file rather than once per row:
/// `{"kind":"record","file":"…","line":` and, per carried column, its `,"name":"` key and
/// the CSV column it reads. Writing the file name (escaped) on every row was ~10 % of
/// `watch`'s instructions per row (callgrind).
struct RecordTemplate {
    let file: [UInt8]
    let head: [UInt8]
    /// Each carried column's key, with the value's opening quote, back to back.
    let keys: [UInt8]
    /// Where each column's key ends in `keys`.
    let keyEnds: [Int]
    /// The CSV column each carried column reads.
    let sourceColumns: [Int]
    /// The same, as (contract column, CSV column) pairs with the keys by contract column,
    /// for rows too long for one reservation.
    let columns: [(Int, Int)]
    let keyPrefixes: [[UInt8]]

    /// `columns`: (contract column, CSV column) in output order; `keyPrefixes[c]`: the
    /// `,"name":` text of contract column c.
    init(file: String, columns: [(Int, Int)], keyPrefixes: [[UInt8]]) {
        self.file = Array(file.utf8)
        var head: [UInt8] = Array(#"{"kind":"record","file":"#.utf8)
        JSONWriter.appendString(file, &head)
        head += Array(#","line":"#.utf8)
        self.head = head
        var keys: [UInt8] = []
        var keyEnds: [Int] = []
        for (c, _) in columns {
            keys += keyPrefixes[c]
            keys.append(UInt8(ascii: "\""))
            keyEnds.append(keys.count)
        }
        self.keys = keys
        self.keyEnds = keyEnds
        sourceColumns = columns.map(\.1)
        self.columns = columns
        self.keyPrefixes = keyPrefixes
    }
}
