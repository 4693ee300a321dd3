import Ingest
import Kafka

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
    ///
    /// Bytes are appended directly, not through `JSONWriter`: the line's start is the same for
    /// every message of a topic (made once), and the value's members are copied as scanned.
    /// Writing the provenance key by key, with escape checks, was a fifth of consume's time.
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
        if topic != prefixTopic {
            // Written by the one writer, once per topic; each message copies it.
            prefixTopic = topic
            prefix = []
            var w = LineEncoder.beginLine(kind: "record", into: &prefix)
            prefixKindAt = prefix.count - 7  // `record"`
            w.key("topic", &prefix)
            w.string(topic, &prefix)
            w.key("partition", &prefix)
        }
        // `record` and `reject` have the same length: the kind is patched in place at the end.
        let kindAt = out.count + prefixKindAt
        out.append(contentsOf: prefix)
        JSONWriter.appendInt(Int(partition), &out)
        out.append(contentsOf: Self.offsetKey)
        JSONWriter.appendInt(Int(offset), &out)
        // A producer may send lines already rejected upstream (`gen --stdout` does): they stay rejects.
        var isReject = false
        for m in scanner.members {
            let key = UnsafeRawBufferPointer(start: base + m.keyStart, count: m.keyEnd - m.keyStart)
            if isReplaced(key, escaped: m.keyEscaped) {
                // The scanner classified the key as it read it (`ProtocolKey`): no name compared here.
                if m.kind == .string && !m.keyEscaped && !m.valueEscaped && m.classifiedKey == ProtocolKey.kind.rawValue
                    && m.valueEnd - m.valueStart == 8 && memcmp(base + m.valueStart, "\"reject\"", 8) == 0
                {
                    isReject = true
                }
                continue
            }
            out.append(UInt8(ascii: ","))
            out.append(UInt8(ascii: "\""))
            if !renamed.isEmpty, let column = columnKey(key, escaped: m.keyEscaped) {
                out.append(contentsOf: column)
            } else {
                out.append(contentsOf: key)
            }
            out.append(UInt8(ascii: "\""))
            out.append(UInt8(ascii: ":"))
            // A nested value may span lines (pretty-printed JSON); outside strings a newline is
            // only whitespace, and inside strings JSON forbids it raw, so a space is exact.
            let start = out.count
            out.append(contentsOf: UnsafeRawBufferPointer(start: base + m.valueStart, count: m.valueEnd - m.valueStart))
            if m.kind == .object || m.kind == .array {
                for i in start..<out.count where out[i] == 0x0A || out[i] == 0x0D { out[i] = 0x20 }
            }
        }
        out.append(UInt8(ascii: "}"))
        out.append(0x0A)
        if isReject {
            for (i, byte) in "reject".utf8.enumerated() { out[kindAt + i] = byte }
        }
        return !isReject
    }

    /// The topic `prefix` was made for, and `{"kind":"record","topic":"…","partition":`, with
    /// where in it the kind's value starts.
    private var prefixTopic: String?
    private var prefix: [UInt8] = []
    private var prefixKindAt = 0
    private static let offsetKey = Array(#","offset":"#.utf8)

    /// Starts a line about one partition: `{"kind":…,"topic":…,"partition":…`.
    private static func partitionLine(_ kind: String, _ partition: TopicPartition, into out: inout [UInt8]) -> JSONWriter {
        var w = LineEncoder.beginLine(kind: kind, into: &out)
        w.key("topic", &out)
        w.string(partition.topic, &out)
        w.key("partition", &out)
        w.int(Int(partition.partition), &out)
        return w
    }

    /// `{"kind":"assigned","topic":…,"partition":…,"next_offset":…}`: this partition's messages
    /// that follow start at `nextOffset`, the offset stored in PostgreSQL (null: none stored,
    /// reading from the partition's beginning).
    public static func appendAssigned(_ partition: TopicPartition, nextOffset: Int64?, into out: inout [UInt8]) {
        var w = partitionLine("assigned", partition, into: &out)
        w.key("next_offset", &out)
        if let nextOffset { w.int(Int(nextOffset), &out) } else { w.null(&out) }
        w.endLine(&out)
    }

    /// `{"kind":"watermarks","topic":…,"partition":…,"low_watermark":…,"high_watermark":…}`:
    /// the partition's watermarks as of the consumer's last fetch (low: null when the broker
    /// did not say), so `load` can publish the lag against what it committed.
    public static func appendWatermarks(_ partition: TopicPartition, low: Int64?, high: Int64, into out: inout [UInt8]) {
        var w = partitionLine("watermarks", partition, into: &out)
        w.key("low_watermark", &out)
        if let low { w.int(Int(low), &out) } else { w.null(&out) }
        w.key("high_watermark", &out)
        w.int(Int(high), &out)
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
        var w = LineEncoder.beginLine(kind: "reject", into: &out)
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
        guard escaped else { return Self.isReplacedName(key) }
        var plain: [UInt8] = []
        unescapeJSONString(key, into: &plain)
        return plain.withUnsafeBytes { Self.isReplacedName($0) }
    }

    /// Compared in place: this runs for every member of every message (an array per member
    /// was a tenth of consume's time per message).
    private static func isReplacedName(_ key: UnsafeRawBufferPointer) -> Bool {
        // The names are 4 to 10 bytes and start with one of these letters.
        guard key.count >= 4 && key.count <= 10 else { return false }
        switch key[0] {
        case UInt8(ascii: "k"), UInt8(ascii: "t"), UInt8(ascii: "p"), UInt8(ascii: "o"), UInt8(ascii: "f"), UInt8(ascii: "l"),
            UInt8(ascii: "i"):
            return replacedKeys.contains { name in
                name.utf8CodeUnitCount == key.count
                    && memcmp(key.baseAddress!, name.utf8Start, key.count) == 0
            }
        default:
            return false
        }
    }
}
