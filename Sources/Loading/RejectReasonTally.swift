import Ingest

/// Counts the `reason` texts of reject lines, for `ingest_rows_rejected_total{reason}`.
struct RejectReasonTally {
    private(set) var counts: [String: Int] = [:]
    private var scanner = JSONObjectScanner()

    /// Adds each reason of a reject line's `reasons` array (a line without one counts as "unknown").
    mutating func add(_ line: ProtocolLine) {
        guard let m = line.member(.reasons), m.kind == .array else {
            counts["unknown", default: 0] += 1
            return
        }
        let array = line.span(m)
        var found = false
        forEachObject(in: array) { object in
            guard (try? scanner.scan(object)) != nil else { return }
            for member in scanner.members where member.kind == .string {
                let key = UnsafeRawBufferPointer(rebasing: object[member.keyStart..<member.keyEnd])
                guard key.elementsEqual("reason".utf8) else { continue }
                var text: [UInt8] = []
                let inner = UnsafeRawBufferPointer(rebasing: object[(member.valueStart + 1)..<(member.valueEnd - 1)])
                if member.valueEscaped { unescapeJSONString(inner, into: &text) } else { text.append(contentsOf: inner) }
                counts[String(decoding: text, as: UTF8.self), default: 0] += 1
                found = true
            }
        }
        if !found { counts["unknown", default: 0] += 1 }
    }

    mutating func add(reason: String) {
        counts[reason, default: 0] += 1
    }
}

/// Calls `body` with each top-level `{…}` element of a JSON array's text (strings skipped).
func forEachObject(in array: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) {
    var depth = 0
    var start = 0
    var inString = false
    var escaped = false
    for (i, b) in array.enumerated() {
        if inString {
            if escaped {
                escaped = false
            } else if b == UInt8(ascii: "\\") {
                escaped = true
            } else if b == UInt8(ascii: "\"") {
                inString = false
            }
            continue
        }
        switch b {
        case UInt8(ascii: "\""): inString = true
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            depth += 1
            if depth == 2 && b == UInt8(ascii: "{") { start = i }
        case UInt8(ascii: "}"), UInt8(ascii: "]"):
            if depth == 2 && b == UInt8(ascii: "}") { body(UnsafeRawBufferPointer(rebasing: array[start...i])) }
            depth -= 1
        default: break
        }
    }
}
