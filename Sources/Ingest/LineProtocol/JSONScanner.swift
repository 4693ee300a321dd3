#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a JSON value is, as far as the line protocol cares.
public enum JSONKind: UInt8, Sendable {
    case string, number, object, array, `true`, `false`, null
}

/// One top-level member of a scanned object, as byte offsets into the scanned line.
///
/// Values stay as byte ranges until a rule needs text: creating `String`s was ~40% of decode
/// time in measurements here.
public struct JSONMember: Sendable {
    /// Key bytes, inside the quotes, still escaped if `keyEscaped`.
    public var keyStart: Int
    public var keyEnd: Int
    public var keyEscaped: Bool
    /// The value's raw span: strings include their quotes; objects and arrays their brackets.
    public var valueStart: Int
    public var valueEnd: Int
    public var kind: JSONKind
    /// For strings: true when the text holds a backslash escape.
    public var valueEscaped: Bool
    /// The `ProtocolKey` raw value the key names, or -1: classified while scanning, so a
    /// decoded line needs no second pass over its keys.
    var protocolKey: Int8 = -1
}

/// Why a line is not a JSON object.
public struct JSONSyntaxError: Error, CustomStringConvertible, Sendable {
    public let offset: Int
    public let problem: String
    public var description: String { "\(problem) at byte \(offset + 1)" }
}

/// A strict, allocation-free JSON scanner specialised for one object per line.
///
/// It validates the whole grammar (RFC 8259, including UTF-8 and escapes) and records the
/// top-level members as byte ranges; nested objects and arrays are validated and kept as raw
/// spans, which is what lets unknown keys pass through a tool untouched. Measured on the
/// development machine (Swift 6.3.1, -O, 1,000,000 lines of 253 bytes through `validate` as an
/// unknown kind, i.e. scan + copy): 0.47 s user, ≈ 2.1 M lines/s per core; decode + validate +
/// encode of records ≈ 650,000–770,000 lines/s per core; Codable was ≈ 72,000–83,000.
public struct JSONObjectScanner {
    public private(set) var members: [JSONMember] = []
    /// Nesting limit, so hostile input cannot exhaust the stack.
    public var maxDepth = 256
    /// For each `ProtocolKey`, the index of its member in `members` (the last if repeated).
    private(set) var keySlots = ProtocolKeySlots()
    /// The keys of the last line the general path scanned, for the lines after it.
    private var shape = LineShape()

    public init() {
        members.reserveCapacity(16)
    }

    /// Scans `line`, which must hold exactly one JSON object (surrounding whitespace allowed).
    ///
    /// A stream's lines mostly repeat one line's keys in one order: a compact line is first
    /// matched against the last line's keys (``LineShape``), which skips finding each key's end
    /// and classifying it. Any difference (another key, whitespace, a bad value) and the line
    /// is scanned again by the general path, which gives the same members and the same errors.
    public mutating func scan(_ line: UnsafeRawBufferPointer) throws(JSONSyntaxError) {
        guard let base = line.baseAddress, line.count > 0 else {
            members.removeAll(keepingCapacity: true)
            keySlots = ProtocolKeySlots()
            throw JSONSyntaxError(offset: 0, problem: "empty line")
        }
        let p = base.assumingMemoryBound(to: UInt8.self)
        if shape.count > 0 && scanLikeLast(p, line.count) { return }
        members.removeAll(keepingCapacity: true)
        keySlots = ProtocolKeySlots()
        try scanAny(p, line.count)
        shape.remember(members, in: p)
    }

    /// Matches a compact line against ``shape``: each key's bytes with their quotes and colon,
    /// compared as words; values scanned as by ``scanAny``. False at the first difference
    /// (`members` then holds scraps). The members are written in place, not appended: an
    /// append checked the array's uniqueness and capacity once a member.
    @inline(__always)
    private mutating func scanLikeLast(_ p: UnsafePointer<UInt8>, _ n: Int) -> Bool {
        guard n >= 2, p[0] == UInt8(ascii: "{") else { return false }
        let shape = self.shape
        let count = shape.count
        if members.count != count {
            members.removeAll(keepingCapacity: true)
            members.append(
                contentsOf: repeatElement(
                    JSONMember(keyStart: 0, keyEnd: 0, keyEscaped: false, valueStart: 0, valueEnd: 0, kind: .null, valueEscaped: false),
                    count: count))
        }
        let depth = maxDepth
        let matched = members.withUnsafeMutableBufferPointer { out -> Bool in
            var c = Cursor(p: p, n: n, i: 1, maxDepth: depth)
            let last = count &- 1
            for k in 0...last {
                let key = shape[k]
                guard shape.matches(key, p, at: c.i, n) else { return false }
                let keyStart = c.i &+ 1
                c.i &+= key.length
                let valueStart = c.i
                let kind: JSONKind
                let escaped: Bool
                do {
                    (kind, escaped) = try c.memberValue()
                } catch {
                    return false
                }
                out[k] = JSONMember(
                    keyStart: keyStart, keyEnd: keyStart &+ key.length &- 3, keyEscaped: false,
                    valueStart: valueStart, valueEnd: c.i, kind: kind, valueEscaped: escaped, protocolKey: key.protocolKey)
                guard c.peek == (k == last ? UInt8(ascii: "}") : UInt8(ascii: ",")) else { return false }
                c.i &+= 1
            }
            return c.i == n
        }
        if matched { keySlots = shape.slots }
        return matched
    }

    private mutating func scanAny(_ p: UnsafePointer<UInt8>, _ n: Int) throws(JSONSyntaxError) {
        var c = Cursor(p: p, n: n, i: 0, maxDepth: maxDepth)
        c.skipSpace()
        guard c.i < c.n, c.p[c.i] == UInt8(ascii: "{") else {
            throw c.fail(c.i < c.n ? "expected '{'" : "empty line")
        }
        c.i += 1
        c.skipSpace()
        if c.peek == UInt8(ascii: "}") {
            c.i += 1
        } else {
            // Compact lines (what every stage writes) are tested for the expected byte first and
            // skip whitespace only when it is not there; strings and numbers, most values, are
            // scanned without the call through `value`.
            while true {
                if c.peek != UInt8(ascii: "\"") { c.skipSpace() }
                guard c.peek == UInt8(ascii: "\"") else { throw c.fail("expected a key string") }
                let keyStart = c.i + 1
                let keyEscaped = try c.string()
                let keyEnd = c.i - 1
                if c.peek != UInt8(ascii: ":") { c.skipSpace() }
                guard c.peek == UInt8(ascii: ":") else { throw c.fail("expected ':'") }
                c.i += 1
                c.skipSpace()
                let valueStart = c.i
                let (kind, escaped) = try c.memberValue()
                let key = ProtocolKey.classify(c.p + keyStart, keyEnd - keyStart, escaped: keyEscaped)
                if let key { keySlots[key] = members.count }
                members.append(
                    JSONMember(
                        keyStart: keyStart, keyEnd: keyEnd, keyEscaped: keyEscaped,
                        valueStart: valueStart, valueEnd: c.i, kind: kind, valueEscaped: escaped,
                        protocolKey: Int8(truncatingIfNeeded: key?.rawValue ?? -1)))
                var next = c.peek
                if next != UInt8(ascii: ",") && next != UInt8(ascii: "}") {
                    c.skipSpace()
                    next = c.peek
                }
                if next == UInt8(ascii: ",") {
                    c.i += 1
                    continue
                }
                if next == UInt8(ascii: "}") {
                    c.i += 1
                    break
                }
                throw c.fail("expected ',' or '}'")
            }
        }
        c.skipSpace()
        if c.i != c.n { throw c.fail("unexpected text after the object") }
    }
}

/// The keys of one scanned line, in order, as ``JSONObjectScanner/scanLikeLast(_:_:)`` matches
/// them: each key's bytes from its opening quote to its colon (`"kind":`), with the key's
/// classification. Only lines whose keys hold no escape are remembered, so equal bytes mean
/// an equal key. Callgrind, 10,000 lines of ~230 bytes (watch's output into `validate`, its
/// output into `load`): `scan` with its key classification ~1,980 → ~1,330 instructions a line;
/// `validate` 7,979 → 7,143 a line, `load` 6,925 → 6,146.
struct LineShape {
    struct Key {
        /// Bytes from the opening quote to the colon: the key's length + 3.
        var length: Int
        var protocolKey: Int8
        /// The first and last eight bytes (overlapping when shorter than 16; for 4...7 bytes
        /// the first and last four, in the low halves).
        var first: UInt64
        var last: UInt64
        /// Where the bytes between the words start in `middles` (keys longer than 16 bytes).
        var middle: Int
    }

    private var keys: [Key] = []
    /// The bytes of long keys between their first and last words.
    private var middles: [UInt8] = []
    /// The remembered line's `keySlots`.
    private(set) var slots = ProtocolKeySlots()

    var count: Int { keys.count }

    subscript(k: Int) -> Key { keys[k] }

    /// Whether `p[i...]` holds `key`'s bytes, with at least one byte after them.
    @inline(__always)
    func matches(_ key: Key, _ p: UnsafePointer<UInt8>, at i: Int, _ n: Int) -> Bool {
        let length = key.length
        guard n &- i > length else { return false }
        let r = UnsafeRawPointer(p + i)
        if length < 8 {
            return UInt64(r.loadUnaligned(as: UInt32.self)) == key.first
                && UInt64(r.loadUnaligned(fromByteOffset: length &- 4, as: UInt32.self)) == key.last
        }
        guard r.loadUnaligned(as: UInt64.self) == key.first, r.loadUnaligned(fromByteOffset: length &- 8, as: UInt64.self) == key.last
        else { return false }
        return length <= 16 || middles.withUnsafeBufferPointer { memcmp(r + 8, $0.baseAddress! + key.middle, length &- 16) == 0 }
    }

    /// Remembers `members`' keys (of the line at `p`); forgets instead when a key is escaped
    /// or empty or a colon does not follow it at once (the line is not compact).
    mutating func remember(_ members: [JSONMember], in p: UnsafePointer<UInt8>) {
        keys.removeAll(keepingCapacity: true)
        middles.removeAll(keepingCapacity: true)
        slots = ProtocolKeySlots()
        guard members.count <= 64 else { return }
        for (index, m) in members.enumerated() {
            guard !m.keyEscaped, m.keyEnd > m.keyStart, p[m.keyEnd + 1] == UInt8(ascii: ":") else {
                keys.removeAll(keepingCapacity: true)
                return
            }
            let start = m.keyStart - 1
            let length = m.keyEnd + 2 - start
            let r = UnsafeRawPointer(p + start)
            var key = Key(length: length, protocolKey: m.protocolKey, first: 0, last: 0, middle: middles.count)
            if length < 8 {
                key.first = UInt64(r.loadUnaligned(as: UInt32.self))
                key.last = UInt64(r.loadUnaligned(fromByteOffset: length - 4, as: UInt32.self))
            } else {
                key.first = r.loadUnaligned(as: UInt64.self)
                key.last = r.loadUnaligned(fromByteOffset: length - 8, as: UInt64.self)
                if length > 16 { middles.append(contentsOf: UnsafeRawBufferPointer(start: r + 8, count: length - 16)) }
            }
            keys.append(key)
            if let protocolKey = ProtocolKey(rawValue: Int(m.protocolKey)) { slots[protocolKey] = index }
        }
    }
}

extension JSONObjectScanner {
    /// Whether `text` is exactly one JSON value of any kind (surrounding whitespace allowed):
    /// a json or jsonb cell. Scanned in place, no copy, no allocation.
    public static func isValue(_ text: UnsafeRawBufferPointer) -> Bool {
        guard let base = text.baseAddress, text.count > 0 else { return false }
        var c = Cursor(p: base.assumingMemoryBound(to: UInt8.self), n: text.count, i: 0, maxDepth: 256)
        c.skipSpace()
        guard c.i < c.n, (try? c.value(depth: 1)) != nil else { return false }
        c.skipSpace()
        return c.i == c.n
    }
}

private struct Cursor {
    let p: UnsafePointer<UInt8>
    let n: Int
    var i: Int
    let maxDepth: Int

    @inline(__always) var peek: UInt8 { i < n ? p[i] : 0 }

    func fail(_ problem: String) -> JSONSyntaxError {
        JSONSyntaxError(offset: i, problem: i >= n ? "\(problem), found end of line" : problem)
    }

    @inline(__always) mutating func skipSpace() {
        while i < n {
            let b = p[i]
            if b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { i += 1 } else { return }
        }
    }

    /// A top-level member's value: strings and numbers, most values, without the call
    /// through `value`. Its kind, and for a string whether it holds escapes.
    @inline(__always)
    mutating func memberValue() throws(JSONSyntaxError) -> (JSONKind, Bool) {
        let first = peek
        if first == UInt8(ascii: "\"") { return (.string, try string()) }
        if isDigit(first) || first == UInt8(ascii: "-") {
            try number()
            return (.number, false)
        }
        return try value(depth: 1)
    }

    mutating func value(depth: Int) throws(JSONSyntaxError) -> (JSONKind, Bool) {
        guard i < n else { throw fail("expected a value") }
        switch p[i] {
        case UInt8(ascii: "\""):
            return (.string, try string())
        case UInt8(ascii: "{"):
            try container(depth: depth, close: UInt8(ascii: "}"), keyed: true)
            return (.object, false)
        case UInt8(ascii: "["):
            try container(depth: depth, close: UInt8(ascii: "]"), keyed: false)
            return (.array, false)
        case UInt8(ascii: "t"):
            try literal("true")
            return (.true, false)
        case UInt8(ascii: "f"):
            try literal("false")
            return (.false, false)
        case UInt8(ascii: "n"):
            try literal("null")
            return (.null, false)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            try number()
            return (.number, false)
        default:
            throw fail("unexpected character")
        }
    }

    mutating func literal(_ word: StaticString) throws(JSONSyntaxError) {
        let count = word.utf8CodeUnitCount
        guard n - i >= count, memcmp(p + i, word.utf8Start, count) == 0 else {
            throw fail("invalid literal")
        }
        i += count
    }

    mutating func container(depth: Int, close: UInt8, keyed: Bool) throws(JSONSyntaxError) {
        guard depth < maxDepth else { throw fail("nesting deeper than \(maxDepth)") }
        i += 1
        skipSpace()
        if peek == close {
            i += 1
            return
        }
        while true {
            skipSpace()
            if keyed {
                guard peek == UInt8(ascii: "\"") else { throw fail("expected a key string") }
                _ = try string()
                skipSpace()
                guard peek == UInt8(ascii: ":") else { throw fail("expected ':'") }
                i += 1
                skipSpace()
            }
            _ = try value(depth: depth + 1)
            skipSpace()
            let b = peek
            if b == UInt8(ascii: ",") {
                i += 1
                continue
            }
            if b == close {
                i += 1
                return
            }
            throw fail(keyed ? "expected ',' or '}'" : "expected ',' or ']'")
        }
    }

    /// Scans a string starting at its opening quote; returns whether it holds escapes.
    ///
    /// Inlined fast path for plain ASCII strings (keys, ids, timestamps: most of a line), eight
    /// bytes at a time; the lowest byte `plainASCIIMask` flags is exact, so the run ends there
    /// without a byte loop. Anything else (escapes, UTF-8, the last bytes of a line) goes to
    /// `stringRest`. Callgrind of `validate`, 10,000 lines of ~208 bytes: `scan` with its key
    /// classification went from ~3,870 to ~2,420 instructions per line.
    @inline(__always)
    mutating func string() throws(JSONSyntaxError) -> Bool {
        i += 1
        // `i <= n - 8` rather than `i + 8 <= n`: no overflow check per word.
        let lastWord = n &- 8
        while i <= lastWord {
            let mask = plainASCIIMask(UInt64(littleEndian: UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)))
            if mask != 0 {
                i &+= mask.trailingZeroBitCount >> 3
                if p[i] == UInt8(ascii: "\"") {
                    i &+= 1
                    return false
                }
                break
            }
            i &+= 8
        }
        return try stringRest()
    }

    /// The rest of a string from `i` (inside it), byte by byte where needed.
    @inline(never)
    mutating func stringRest() throws(JSONSyntaxError) -> Bool {
        var escaped = false
        let lastWord = n &- 8
        while true {
            while i <= lastWord {
                let w = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
                let mask = plainASCIIMask(UInt64(littleEndian: w))
                if mask != 0 {
                    i += mask.trailingZeroBitCount >> 3
                    break
                }
                i += 8
            }
            while i < n {
                let b = p[i]
                if b >= 0x20 && b < 0x80 && b != UInt8(ascii: "\"") && b != UInt8(ascii: "\\") {
                    i += 1
                } else {
                    break
                }
            }
            guard i < n else { throw fail("unterminated string") }
            let b = p[i]
            if b == UInt8(ascii: "\"") {
                i += 1
                return escaped
            }
            if b == UInt8(ascii: "\\") {
                escaped = true
                guard i + 1 < n else { i += 1; throw fail("unterminated string") }
                switch p[i + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                    UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    i += 2
                case UInt8(ascii: "u"):
                    guard i + 5 < n, isHex(p[i + 2]), isHex(p[i + 3]), isHex(p[i + 4]), isHex(p[i + 5]) else {
                        throw fail("invalid \\u escape")
                    }
                    i += 6
                default:
                    throw fail("invalid escape")
                }
                continue
            }
            if b < 0x20 { throw fail("control character in string") }
            i = try utf8Sequence(at: i)
        }
    }

    /// Validates one multi-byte UTF-8 sequence; returns the offset after it.
    func utf8Sequence(at start: Int) throws(JSONSyntaxError) -> Int {
        guard let end = utf8SequenceEnd(p, start, n) else {
            throw JSONSyntaxError(offset: start, problem: "invalid UTF-8")
        }
        return end
    }

    @inline(__always)
    mutating func number() throws(JSONSyntaxError) {
        if p[i] == UInt8(ascii: "-") { i += 1 }
        guard i < n, isDigit(p[i]) else { throw fail("invalid number") }
        if p[i] == UInt8(ascii: "0") {
            i += 1
        } else {
            while i < n && isDigit(p[i]) { i += 1 }
        }
        if i < n && p[i] == UInt8(ascii: ".") {
            i += 1
            guard i < n, isDigit(p[i]) else { throw fail("invalid number") }
            while i < n && isDigit(p[i]) { i += 1 }
        }
        if i < n && (p[i] == UInt8(ascii: "e") || p[i] == UInt8(ascii: "E")) {
            i += 1
            if i < n && (p[i] == UInt8(ascii: "+") || p[i] == UInt8(ascii: "-")) { i += 1 }
            guard i < n, isDigit(p[i]) else { throw fail("invalid number") }
            while i < n && isDigit(p[i]) { i += 1 }
        }
    }
}

/// Non-zero when any byte of `w` is `"`, `\\`, a control character or non-ASCII (SWAR; a
/// byte after a match may be flagged too, which only sends the caller to its byte loop).
@inline(__always) func plainASCIIMask(_ w: UInt64) -> UInt64 {
    let high: UInt64 = 0x8080_8080_8080_8080
    let ones: UInt64 = 0x0101_0101_0101_0101
    let control = (w &- 0x2020_2020_2020_2020) & ~w
    let q = w ^ 0x2222_2222_2222_2222
    let quote = (q &- ones) & ~q
    let b = w ^ 0x5C5C_5C5C_5C5C_5C5C
    let backslash = (b &- ones) & ~b
    return (w | control | quote | backslash) & high
}

@inline(__always) func isDigit(_ b: UInt8) -> Bool { b &- 0x30 < 10 }
@inline(__always) func isHex(_ b: UInt8) -> Bool {
    b &- 0x30 < 10 || (b | 0x20) &- 0x61 < 6
}
@inline(__always) func hexValue(_ b: UInt8) -> UInt32 {
    b &- 0x30 < 10 ? UInt32(b &- 0x30) : UInt32((b | 0x20) &- 0x61 + 10)
}

/// Decodes the text of a JSON string span (without its quotes) into UTF-8 bytes.
///
/// Unpaired surrogates in `\u` escapes become U+FFFD, as JSON parsers commonly do.
public func unescapeJSONString(_ raw: UnsafeRawBufferPointer, into out: inout [UInt8]) {
    let p = raw.bindMemory(to: UInt8.self)
    var i = 0
    let n = p.count
    while i < n {
        let b = p[i]
        if b != UInt8(ascii: "\\") {
            out.append(b)
            i += 1
            continue
        }
        guard i + 1 < n else { return }
        let e = p[i + 1]
        i += 2
        switch e {
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "u"):
            guard i + 4 <= n else { return }
            var code = hexValue(p[i]) << 12 | hexValue(p[i + 1]) << 8 | hexValue(p[i + 2]) << 4 | hexValue(p[i + 3])
            i += 4
            if code >= 0xD800 && code <= 0xDBFF {
                if i + 6 <= n, p[i] == UInt8(ascii: "\\"), p[i + 1] == UInt8(ascii: "u") {
                    let low = hexValue(p[i + 2]) << 12 | hexValue(p[i + 3]) << 8 | hexValue(p[i + 4]) << 4 | hexValue(p[i + 5])
                    if low >= 0xDC00 && low <= 0xDFFF {
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    } else {
                        code = 0xFFFD
                    }
                } else {
                    code = 0xFFFD
                }
            } else if code >= 0xDC00 && code <= 0xDFFF {
                code = 0xFFFD
            }
            appendUTF8(code, to: &out)
        default: out.append(e)
        }
    }
}

@inline(__always) func appendUTF8(_ code: UInt32, to out: inout [UInt8]) {
    switch code {
    case 0..<0x80:
        out.append(UInt8(code))
    case 0x80..<0x800:
        out.append(UInt8(0xC0 | (code >> 6)))
        out.append(UInt8(0x80 | (code & 0x3F)))
    case 0x800..<0x10000:
        out.append(UInt8(0xE0 | (code >> 12)))
        out.append(UInt8(0x80 | ((code >> 6) & 0x3F)))
        out.append(UInt8(0x80 | (code & 0x3F)))
    default:
        out.append(UInt8(0xF0 | (code >> 18)))
        out.append(UInt8(0x80 | ((code >> 12) & 0x3F)))
        out.append(UInt8(0x80 | ((code >> 6) & 0x3F)))
        out.append(UInt8(0x80 | (code & 0x3F)))
    }
}
