import Ingest
import Kafka

/// Turns Kafka messages into protocol lines.
///
/// A message value that is a JSON object becomes a record: `kind`, then the provenance
/// (`topic`, `partition`, `offset`), then the value's members as received. A value that is not
/// a JSON object becomes a reject holding the value as `raw`: never a stop.
///
/// Keys are mapped through the contract as `watch` maps a CSV header: a key naming a column's
/// `source` (compared without case) is written as the column's name, so `validate` and `load`
/// see the same records from either source. Other keys pass as received.
public struct MessageLines {
    private var scanner = JSONObjectScanner()
    /// Lowercased source name → the column name's JSON key text, for the columns whose source
    /// differs from their name; empty for the e-commerce contract, whose loop stays as it was.
    private let renamed: [[UInt8]: [UInt8]]

    public init(contract: Contract = .ecommerceEvents) {
        var renamed: [[UInt8]: [UInt8]] = [:]
        for column in contract.columns where column.source != column.name {
            var key: [UInt8] = []
            JSONWriter.appendString(column.name, &key)
            renamed[Array(column.source.lowercased().utf8)] = Array(key.dropFirst().dropLast())
        }
        self.renamed = renamed
    }

    /// Provenance keys: a value's own members with these names are dropped, so the line's
    /// provenance is always the message's (and `load` never waits for a file's end marker).
    static let replacedKeys: [StaticString] = ["kind", "topic", "partition", "offset", "file", "line", "input_line"]

    /// Appends the line for one message (with its newline); true when it is a record.
    /// (`topic`, `partition` and `offset` replace any the value has.)
    @discardableResult
    public mutating func append(topic: String, partition: Int32, offset: Int64, value: UnsafeRawBufferPointer?, into out: inout [UInt8])
        -> Bool
    {
        guard let value, value.count > 0 else {
            appendReject(topic, partition, offset, raw: nil, reason: "message value is empty (null or zero bytes)", &out)
            return false
        }
        do {
            try scanner.scan(value)
        } catch {
            appendReject(topic, partition, offset, raw: value, reason: "message value is not a JSON object: \(error.description)", &out)
            return false
        }
        let base = value.baseAddress!.assumingMemoryBound(to: UInt8.self)
        // A producer may send lines already rejected upstream (`gen --stdout` does): they stay rejects.
        let isReject = scanner.members.contains { m in
            m.kind == .string && !m.keyEscaped && !m.valueEscaped
                && UnsafeRawBufferPointer(start: base + m.keyStart, count: m.keyEnd - m.keyStart).elementsEqual("kind".utf8)
                && UnsafeRawBufferPointer(start: base + m.valueStart, count: m.valueEnd - m.valueStart).elementsEqual("\"reject\"".utf8)
        }
        var w = JSONWriter()
        w.beginObject(&out)
        w.key("kind", &out)
        w.string(isReject ? "reject" : "record", &out)
        appendProvenance(&w, topic, partition, offset, &out)
        for m in scanner.members {
            if isReplaced(UnsafeRawBufferPointer(start: base + m.keyStart, count: m.keyEnd - m.keyStart), escaped: m.keyEscaped) {
                continue
            }
            let key = UnsafeRawBufferPointer(start: base + m.keyStart, count: m.keyEnd - m.keyStart)
            if !renamed.isEmpty, let column = columnKey(key, escaped: m.keyEscaped) {
                column.withUnsafeBytes { w.rawKey($0, &out) }
            } else {
                w.rawKey(key, &out)
            }
            // A nested value may span lines (pretty-printed JSON); outside strings a newline is
            // only whitespace, and inside strings JSON forbids it raw, so a space is exact.
            let start = out.count
            w.raw(UnsafeRawBufferPointer(start: base + m.valueStart, count: m.valueEnd - m.valueStart), &out)
            if m.kind == .object || m.kind == .array {
                for i in start..<out.count where out[i] == 0x0A || out[i] == 0x0D { out[i] = 0x20 }
            }
        }
        w.endLine(&out)
        return !isReject
    }

    /// `{"kind":"assigned","topic":…,"partition":…,"next_offset":…}`: this partition's messages
    /// that follow start at `nextOffset`, the offset stored in PostgreSQL (null: none stored,
    /// reading from the partition's beginning).
    public static func appendAssigned(_ partition: TopicPartition, nextOffset: Int64?, into out: inout [UInt8]) {
        var w = JSONWriter()
        w.beginObject(&out)
        w.key("kind", &out)
        w.string("assigned", &out)
        w.key("topic", &out)
        w.string(partition.topic, &out)
        w.key("partition", &out)
        w.int(Int(partition.partition), &out)
        w.key("next_offset", &out)
        if let nextOffset { w.int(Int(nextOffset), &out) } else { w.null(&out) }
        w.endLine(&out)
    }

    private func appendProvenance(_ w: inout JSONWriter, _ topic: String, _ partition: Int32, _ offset: Int64, _ out: inout [UInt8]) {
        w.key("topic", &out)
        w.string(topic, &out)
        w.key("partition", &out)
        w.int(Int(partition), &out)
        w.key("offset", &out)
        w.int(Int(offset), &out)
    }

    private func appendReject(
        _ topic: String, _ partition: Int32, _ offset: Int64, raw: UnsafeRawBufferPointer?, reason: String, _ out: inout [UInt8]
    ) {
        var w = JSONWriter()
        w.beginObject(&out)
        w.key("kind", &out)
        w.string("reject", &out)
        appendProvenance(&w, topic, partition, offset, &out)
        w.key("raw", &out)
        if let raw {
            if let repaired = repairedUTF8(raw) {
                repaired.withUnsafeBytes { w.string($0, &out) }
            } else {
                w.string(raw, &out)
            }
        } else {
            w.null(&out)
        }
        w.key("reasons", &out)
        LineEncoder.appendReasons([RejectReason(field: nil, reason: reason)], &out)
        w.endLine(&out)
    }

    /// The column name a message key names through its `source`, as escaped key text; nil when
    /// the key is no renamed column's source.
    private func columnKey(_ key: UnsafeRawBufferPointer, escaped: Bool) -> [UInt8]? {
        var plain: [UInt8] = []
        if escaped { unescapeJSONString(key, into: &plain) } else { plain = Array(key) }
        for i in plain.indices where plain[i] >= UInt8(ascii: "A") && plain[i] <= UInt8(ascii: "Z") { plain[i] |= 0x20 }
        if plain.contains(where: { $0 >= 0x80 }) {
            plain = Array(String(decoding: plain, as: UTF8.self).lowercased().utf8)
        }
        return renamed[plain]
    }

    private func isReplaced(_ key: UnsafeRawBufferPointer, escaped: Bool) -> Bool {
        var plain: [UInt8] = []
        if escaped { unescapeJSONString(key, into: &plain) } else { plain = Array(key) }
        return Self.replacedKeys.contains { name in
            name.utf8CodeUnitCount == plain.count
                && plain.elementsEqual(UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        }
    }
}
