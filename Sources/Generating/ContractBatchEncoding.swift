import Ingest

/// A batch of contract rows as a CSV file, as protocol records and as a manifest line.
extension ContractRecords {
    /// The CSV file: the header of the contract's `source` names, then one row per record,
    /// cells quoted (RFC 4180) when they hold a comma, a quote, a line break or edge spaces.
    public static func csv(_ rows: [ContractRow], contract: Contract) -> [UInt8] {
        var out: [UInt8] = []
        appendCSVRow(contract.columns.map(\.source), &out)
        for row in rows { appendCSVRow(row.cells, &out) }
        return out
    }

    static func appendCSVRow(_ cells: [String], _ out: inout [UInt8]) {
        for (index, cell) in cells.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            let bytes = Array(cell.utf8)
            let needsQuotes =
                bytes.contains { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\"") || $0 == 0x0A || $0 == 0x0D }
                || bytes.first == UInt8(ascii: " ") || bytes.last == UInt8(ascii: " ")
            guard needsQuotes else {
                out.append(contentsOf: bytes)
                continue
            }
            out.append(UInt8(ascii: "\""))
            for b in bytes {
                if b == UInt8(ascii: "\"") { out.append(b) }
                out.append(b)
            }
            out.append(UInt8(ascii: "\""))
        }
        out.append(0x0A)
    }

    /// The line of the CSV file each row starts on (the header is line 1; a quoted line break
    /// makes a row span lines, as `watch` counts them).
    public static func startLines(_ rows: [ContractRow]) -> [Int] {
        var line = 2
        return rows.map { row in
            defer { line += 1 + row.cells.reduce(0) { $0 + $1.utf8.filter { $0 == 0x0A }.count } }
            return line
        }
    }

    /// Records without file provenance (`gen --stdout --contract`); a row with the wrong cell
    /// count becomes the reject `watch` would make of it.
    public static func appendRecords(_ rows: [ContractRow], contract: Contract, into out: inout [UInt8]) {
        let names = contract.columns.map(\.name)
        for row in rows {
            if row.cells.count != names.count {
                var raw: [UInt8] = []
                appendCSVRow(row.cells, &raw)
                raw.removeLast()
                raw.withUnsafeBytes {
                    LineEncoder.appendRawReject(
                        file: nil, line: nil, raw: $0,
                        reasons: [RejectReason(field: nil, reason: "expected \(names.count) fields, found \(row.cells.count)")], into: &out)
                }
                continue
            }
            out.append(contentsOf: recordLine(names: names, cells: row.cells))
        }
    }

    /// One manifest line, the ground truth for tests:
    /// `{"file":…,"rows":50,"valid":48,"invalid":2,"valid_keys":[…],"invalid_lines":[{"line":7,"rule":"price.range_min","field":"price","reason":"must be > 0"}]}`.
    /// `valid_keys` holds each valid row's key as written (an array per row for a key of
    /// several columns; absent when the contract has no key).
    public static func appendManifestLine(file: String?, rows: [ContractRow], contract: Contract, into out: inout [UInt8]) {
        var w = JSONWriter()
        w.beginObject(&out)
        w.key("file", &out)
        if let file { w.string(file, &out) } else { w.null(&out) }
        w.key("table", &out)
        w.string(contract.table.description, &out)
        w.key("rows", &out)
        w.int(rows.count, &out)
        let invalid = rows.filter { $0.broken != nil }.count
        w.key("valid", &out)
        w.int(rows.count - invalid, &out)
        w.key("invalid", &out)
        w.int(invalid, &out)
        if !contract.key.isEmpty {
            w.key("valid_keys", &out)
            w.beginArray(&out)
            for row in rows {
                guard let key = row.key, row.broken == nil else { continue }
                w.element(&out)
                if key.count == 1 {
                    w.string(key[0], &out)
                } else {
                    w.beginArray(&out)
                    for part in key {
                        w.element(&out)
                        w.string(part, &out)
                    }
                    w.endArray(&out)
                }
            }
            w.endArray(&out)
        }
        w.key("invalid_lines", &out)
        w.beginArray(&out)
        for (row, line) in zip(rows, startLines(rows)) {
            guard let broken = row.broken else { continue }
            w.element(&out)
            w.beginObject(&out)
            w.key("line", &out)
            w.int(line, &out)
            w.key("rule", &out)
            w.string(broken.rule, &out)
            w.key("field", &out)
            if let field = broken.field { w.string(field, &out) } else { w.null(&out) }
            w.key("reason", &out)
            w.string(broken.reason, &out)
            w.endObject(&out)
        }
        w.endArray(&out)
        w.endLine(&out)
    }
}
