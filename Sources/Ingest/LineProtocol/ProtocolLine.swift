#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The keys the line protocol gives meaning to. Any other key passes through untouched.
public enum ProtocolKey: Int, CaseIterable, Sendable {
    case kind, file, line, reasons, raw, rows, bytes, sha256, seen, inode, mtimeNs
    case eventID, userID, productID, eventType, price, eventTimestamp

    public var name: StaticString {
        switch self {
        case .kind: "kind"
        case .file: "file"
        case .line: "line"
        case .reasons: "reasons"
        case .raw: "raw"
        case .rows: "rows"
        case .bytes: "bytes"
        case .sha256: "sha256"
        case .seen: "seen"
        case .inode: "inode"
        case .mtimeNs: "mtime_ns"
        case .eventID, .userID, .productID, .eventType, .price, .eventTimestamp: eventField!.key
        }
    }

    /// The protocol key of an event field.
    public init(_ field: EventField) {
        self = ProtocolKey(rawValue: ProtocolKey.eventID.rawValue + field.rawValue)!
    }

    /// The event field this key names, if any.
    public var eventField: EventField? {
        rawValue >= ProtocolKey.eventID.rawValue ? EventField(rawValue: rawValue - ProtocolKey.eventID.rawValue) : nil
    }

    /// Classifies raw (unescaped) key bytes; nil for keys the protocol does not know.
    @inline(__always)
    static func classify(_ p: UnsafePointer<UInt8>, _ n: Int) -> ProtocolKey? {
        @inline(__always) func eq(_ s: StaticString) -> Bool {
            n == s.utf8CodeUnitCount && memcmp(p, s.utf8Start, n) == 0
        }
        switch n {
        case 3: return eq("raw") ? .raw : nil
        case 4:
            if eq("kind") { return .kind }
            if eq("file") { return .file }
            if eq("line") { return .line }
            if eq("rows") { return .rows }
            if eq("seen") { return .seen }
            return nil
        case 5:
            if eq("bytes") { return .bytes }
            if eq("price") { return .price }
            if eq("inode") { return .inode }
            return nil
        case 6: return eq("sha256") ? .sha256 : nil
        case 7:
            if eq("reasons") { return .reasons }
            if eq("user_id") { return .userID }
            return nil
        case 8:
            if eq("event_id") { return .eventID }
            if eq("mtime_ns") { return .mtimeNs }
            return nil
        case 10:
            if eq("product_id") { return .productID }
            if eq("event_type") { return .eventType }
            return nil
        case 15: return eq("event_timestamp") ? .eventTimestamp : nil
        default: return nil
        }
    }
}

/// The three kinds of line. A line without `"kind"` is a record, so plain event objects from
/// any producer (`jq`, `kcat`) load as they are.
public enum LineKind: Equatable, Sendable {
    case record, reject, endOfFile
    /// A `kind` this version does not know: passed through, never loaded.
    case other(String)
}

/// A line of the protocol, scanned: the line's bytes plus where each known key's value is.
///
/// Borrowed view: valid only while the line's bytes are (for `LineReader`, until its next call).
public struct ProtocolLine {
    public let bytes: UnsafeRawBufferPointer
    public let members: [JSONMember]
    /// For each `ProtocolKey`, the index of its member (the last one if repeated), or -1.
    private var slots: (Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int)

    init(bytes: UnsafeRawBufferPointer, members: [JSONMember]) {
        self.bytes = bytes
        self.members = members
        slots = (-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
        let base = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        withUnsafeMutableBytes(of: &slots) { raw in
            let s = raw.bindMemory(to: Int.self)
            for (index, m) in members.enumerated() {
                let key: ProtocolKey?
                if m.keyEscaped {
                    var plain: [UInt8] = []
                    unescapeJSONString(UnsafeRawBufferPointer(start: base + m.keyStart, count: m.keyEnd - m.keyStart), into: &plain)
                    key = plain.withUnsafeBufferPointer { ProtocolKey.classify($0.baseAddress ?? base, $0.count) }
                } else {
                    key = ProtocolKey.classify(base + m.keyStart, m.keyEnd - m.keyStart)
                }
                if let key { s[key.rawValue] = index }
            }
        }
    }

    /// The member holding `key`, if present.
    @inline(__always)
    public func member(_ key: ProtocolKey) -> JSONMember? {
        let index = withUnsafeBytes(of: slots) { $0.bindMemory(to: Int.self)[key.rawValue] }
        return index >= 0 ? members[index] : nil
    }

    /// True when `member` is one the protocol knows (so a writer may re-encode it).
    public func isKnown(_ memberIndex: Int) -> Bool {
        withUnsafeBytes(of: slots) { raw in
            raw.bindMemory(to: Int.self).contains(memberIndex)
        }
    }

    public var kind: LineKind {
        guard let m = member(.kind) else { return .record }
        guard m.kind == .string else { return .other(String(decoding: span(m), as: UTF8.self)) }
        return withStringBytes(m) { text -> LineKind in
            @inline(__always) func equals(_ word: StaticString) -> Bool {
                text.count == word.utf8CodeUnitCount && memcmp(text.baseAddress!, word.utf8Start, text.count) == 0
            }
            if equals("record") { return .record }
            if equals("reject") { return .reject }
            if equals("eof") { return .endOfFile }
            return .other(String(decoding: text, as: UTF8.self))
        }
    }

    /// The source file name, when the line carries provenance.
    public var file: String? { string(.file) }

    /// The 1-based line in the source file, when the line carries provenance.
    public var lineNumber: Int? { int(.line) }

    /// The raw JSON text of a member's value (strings with their quotes).
    @inline(__always)
    public func span(_ m: JSONMember) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[m.valueStart..<m.valueEnd])
    }

    /// The raw JSON text of a member's key (inside the quotes, escapes kept).
    @inline(__always)
    public func keySpan(_ m: JSONMember) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[m.keyStart..<m.keyEnd])
    }

    /// The decoded bytes of a string member. Allocates only when the string has escapes.
    public func stringBytes(_ m: JSONMember) -> [UInt8] {
        var out: [UInt8] = []
        withStringBytes(m) { out.append(contentsOf: $0) }
        return out
    }

    /// Calls `body` with a string member's decoded bytes, without copying in the common case.
    @inline(__always)
    public func withStringBytes<R>(_ m: JSONMember, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let inner = UnsafeRawBufferPointer(rebasing: bytes[(m.valueStart + 1)..<(m.valueEnd - 1)])
        if !m.valueEscaped { return try body(inner) }
        var plain: [UInt8] = []
        plain.reserveCapacity(inner.count)
        unescapeJSONString(inner, into: &plain)
        return try plain.withUnsafeBytes { try body($0) }
    }

    /// A string value as `String`; numbers and literals as their JSON text; nil when absent.
    public func string(_ key: ProtocolKey) -> String? {
        guard let m = member(key) else { return nil }
        switch m.kind {
        case .string: return withStringBytes(m) { String(decoding: $0, as: UTF8.self) }
        case .null: return nil
        default: return String(decoding: span(m), as: UTF8.self)
        }
    }

    /// An integer value (a JSON number without fraction, or a string of digits).
    public func int(_ key: ProtocolKey) -> Int? {
        guard let m = member(key) else { return nil }
        switch m.kind {
        case .number: return Int(String(decoding: span(m), as: UTF8.self))
        case .string: return withStringBytes(m) { Int(String(decoding: $0, as: UTF8.self)) }
        default: return nil
        }
    }
}

/// True when `bytes` is the unterminated last line of a stream and not a JSON object: the
/// fragment a producer killed mid-write leaves. It is dropped with a warning, not made a reject:
/// it is not data (a file's rows are read again after a restart), and a reject for it would
/// put a row into the dead letters twice.
public func isTruncatedTail(_ bytes: UnsafeRawBufferPointer, reader: LineReader) -> Bool {
    guard reader.lastLineUnterminated else { return false }
    var scanner = JSONObjectScanner()
    return (try? scanner.scan(bytes)) == nil
}

/// Decodes protocol lines with one reusable scanner.
public struct LineDecoder {
    private var scanner = JSONObjectScanner()

    public init() {}

    /// Scans `bytes` (one line, no newline). The result borrows `bytes`.
    public mutating func decode(_ bytes: UnsafeRawBufferPointer) throws(JSONSyntaxError) -> ProtocolLine {
        try scanner.scan(bytes)
        return ProtocolLine(bytes: bytes, members: scanner.members)
    }
}
