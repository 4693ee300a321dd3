import Ingest
import Postgres

/// Writes records as rows of PostgreSQL's COPY text format: the path for isolating a row the
/// server refuses (and for records not in canonical form), where the server parses what
/// `validate` wrote and a refused row is reported with its message. Batches that commit
/// cleanly go as binary tuples (`CopyBinary`). Columns are the plan's (the contract's).
enum CopyText {
    /// Appends one row for the record in `line`, columns in `plan`'s order: a missing or null
    /// value is `\N`; a string its decoded text; a json or jsonb column the value's JSON text
    /// (a JSON string with its quotes); any other value its JSON text (`42`, `true`).
    static func appendRow(from line: ProtocolLine, plan: LoadPlan, into out: inout [UInt8]) {
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: max(plan.columnCount, 1)) { slots in
            plan.locate(line, into: slots.baseAddress!)
            for column in 0..<plan.columnCount {
                if column > 0 { out.append(0x09) }
                let slot = Int(slots[column])
                guard slot >= 0 else {
                    out.append(contentsOf: nullMarker)
                    continue
                }
                let m = line.members[slot]
                let format = plan.formats[column]
                switch m.kind {
                case .null:
                    out.append(contentsOf: nullMarker)
                case .string where format != .json && format != .jsonb:
                    line.withStringBytes(m) { appendEscaped($0, &out) }
                default:
                    appendEscaped(line.span(m), &out)
                }
            }
        }
        out.append(0x0A)
    }

    /// Appends one text value, escaping what COPY's text format gives meaning to.
    static func appendEscaped(_ bytes: UnsafeRawBufferPointer, _ out: inout [UInt8]) {
        let p = bytes.bindMemory(to: UInt8.self)
        var runStart = 0
        for i in 0..<p.count {
            let b = p[i]
            let escape: UInt8
            switch b {
            case UInt8(ascii: "\\"): escape = UInt8(ascii: "\\")
            case 0x09: escape = UInt8(ascii: "t")
            case 0x0A: escape = UInt8(ascii: "n")
            case 0x0D: escape = UInt8(ascii: "r")
            default: continue
            }
            if i > runStart { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<i])) }
            out.append(UInt8(ascii: "\\"))
            out.append(escape)
            runStart = i + 1
        }
        if p.count > runStart { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<p.count])) }
    }

    static func appendEscaped(_ text: String, _ out: inout [UInt8]) {
        var text = text
        text.withUTF8 { appendEscaped(UnsafeRawBufferPointer($0), &out) }
    }

    static let nullMarker: [UInt8] = [UInt8(ascii: "\\"), UInt8(ascii: "N")]
}

/// A PostgreSQL array literal (`{"a","b\"c"}`) for passing a list as one text parameter.
func arrayLiteral(_ values: [String?]) -> String {
    var out = "{"
    for (i, value) in values.enumerated() {
        if i > 0 { out += "," }
        guard let value else {
            out += "NULL"
            continue
        }
        out += "\""
        for ch in value.unicodeScalars {
            if ch == "\"" || ch == "\\" { out += "\\" }
            out.unicodeScalars.append(ch)
        }
        out += "\""
    }
    return out + "}"
}
