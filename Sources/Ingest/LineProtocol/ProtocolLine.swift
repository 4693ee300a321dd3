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

    /// Classifies a scanned key (inside its quotes); nil for keys the protocol does not know.
    @inline(__always)
    static func classify(_ p: UnsafePointer<UInt8>, _ n: Int, escaped: Bool) -> ProtocolKey? {
        if !escaped { return classify(p, n) }
        var plain: [UInt8] = []
        unescapeJSONString(UnsafeRawBufferPointer(start: p, count: n), into: &plain)
        return plain.withUnsafeBufferPointer { $0.baseAddress.flatMap { classify($0, plain.count) } }
    }

    /// Classifies raw (unescaped) key bytes; nil for keys the protocol does not know.
    ///
    /// Compares whole words loaded from the key (two overlapping loads cover any length up to
    /// 16) with constants, instead of one `memcmp` per candidate, during the scan instead of a
    /// second pass: ~21 instead of ~31 instructions per key, and every member of every line
    /// passes here.
    @inline(__always)
    static func classify(_ p: UnsafePointer<UInt8>, _ n: Int) -> ProtocolKey? {
        let r = UnsafeRawPointer(p)
        @inline(__always) func short() -> UInt64 {  // 4...8 bytes: first four, last four
            UInt64(UInt32(littleEndian: r.loadUnaligned(as: UInt32.self)))
                | UInt64(UInt32(littleEndian: r.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self))) << 32
        }
        @inline(__always) func long(_ first: UInt64, _ last: UInt64) -> Bool {  // 8...16 bytes
            UInt64(littleEndian: r.loadUnaligned(as: UInt64.self)) == first
                && UInt64(littleEndian: r.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)) == last
        }
        // The constants are the keys' bytes read little-endian the same way ("kind" twice,
        // "bytes" as "byte" then "ytes", …).
        switch n {
        case 3: return p[0] == UInt8(ascii: "r") && p[1] == UInt8(ascii: "a") && p[2] == UInt8(ascii: "w") ? .raw : nil
        case 4:
            switch short() {
            case 0x646e_696b_646e_696b: return .kind
            case 0x656c_6966_656c_6966: return .file
            case 0x656e_696c_656e_696c: return .line
            case 0x7377_6f72_7377_6f72: return .rows
            case 0x6e65_6573_6e65_6573: return .seen
            default: return nil
            }
        case 5:
            switch short() {
            case 0x7365_7479_6574_7962: return .bytes
            case 0x6563_6972_6369_7270: return .price
            case 0x6564_6f6e_646f_6e69: return .inode
            default: return nil
            }
        case 6: return short() == 0x3635_3261_3261_6873 ? .sha256 : nil
        case 7:
            switch short() {
            case 0x736e_6f73_7361_6572: return .reasons
            case 0x6469_5f72_7265_7375: return .userID
            default: return nil
            }
        case 8:
            switch short() {
            case 0x6469_5f74_6e65_7665: return .eventID
            case 0x736e_5f65_6d69_746d: return .mtimeNs
            default: return nil
            }
        case 10:
            if long(0x5f74_6375_646f_7270, 0x6469_5f74_6375_646f) { return .productID }
            if long(0x7974_5f74_6e65_7665, 0x6570_7974_5f74_6e65) { return .eventType }
            return nil
        case 15: return long(0x6974_5f74_6e65_7665, 0x706d_6174_7365_6d69) ? .eventTimestamp : nil
        default: return nil
        }
    }
}

/// For each `ProtocolKey`, the index of the member holding it, or -1: a fixed tuple, so a
/// lookup is an index, not a search or a dictionary.
struct ProtocolKeySlots {
    private var slots:
        (Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32) =
            (-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)

    /// By a `ProtocolKey` raw value, which must be valid.
    subscript(rawKey key: Int) -> Int {
        @inline(__always) get { withUnsafeBytes(of: slots) { Int($0.load(fromByteOffset: key * 4, as: Int32.self)) } }
    }

    subscript(key: ProtocolKey) -> Int {
        @inline(__always) get { withUnsafeBytes(of: slots) { Int($0.load(fromByteOffset: key.rawValue * 4, as: Int32.self)) } }
        @inline(__always) set {
            withUnsafeMutableBytes(of: &slots) {
                $0.storeBytes(of: Int32(truncatingIfNeeded: newValue), toByteOffset: key.rawValue * 4, as: Int32.self)
            }
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
    let slots: ProtocolKeySlots

    init(bytes: UnsafeRawBufferPointer, members: [JSONMember], slots: ProtocolKeySlots) {
        self.bytes = bytes
        self.members = members
        self.slots = slots
    }

    /// From a scanner's members alone (their keys were classified while scanning).
    init(bytes: UnsafeRawBufferPointer, members: [JSONMember]) {
        var slots = ProtocolKeySlots()
        for (index, m) in members.enumerated() {
            if let key = ProtocolKey(rawValue: Int(m.protocolKey)) { slots[key] = index }
        }
        self.init(bytes: bytes, members: members, slots: slots)
    }

    /// The member holding `key`, if present.
    @inline(__always)
    public func member(_ key: ProtocolKey) -> JSONMember? {
        let index = slots[key]
        return index >= 0 ? members[index] : nil
    }

    /// The index in `members` of the member holding `key`, or -1.
    @inline(__always)
    func memberIndex(_ key: ProtocolKey) -> Int { slots[key] }

    public var kind: LineKind {
        guard let m = member(.kind) else { return .record }
        guard m.kind == .string else { return .other(String(decoding: span(m), as: UTF8.self)) }
        // `"record"` and `"reject"`, quotes included, are one machine word each: one load and
        // a compare, where the general path below was ~240 instructions of load's line.
        if !m.valueEscaped && m.valueEnd - m.valueStart == 8 {
            let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: m.valueStart, as: UInt64.self))
            if word == ProtocolLine.recordWord { return .record }
            if word == ProtocolLine.rejectWord { return .reject }
        }
        return withStringBytes(m) { text -> LineKind in
            // A byte loop, not `memcmp`: the words are short and every line asks.
            @inline(__always) func equals(_ word: StaticString) -> Bool {
                guard text.count == word.utf8CodeUnitCount else { return false }
                for k in 0..<text.count where text[k] != word.utf8Start[k] { return false }
                return true
            }
            if equals("record") { return .record }
            if equals("reject") { return .reject }
            if equals("eof") { return .endOfFile }
            return .other(String(decoding: text, as: UTF8.self))
        }
    }

    /// `"record"` and `"reject"` with their quotes, as little-endian words.
    static let recordWord: UInt64 = 0x2264_726F_6365_7222
    static let rejectWord: UInt64 = 0x2274_6365_6A65_7222

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
        return ProtocolLine(bytes: bytes, members: scanner.members, slots: scanner.keySlots)
    }
}
