#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Appends JSON text to a byte buffer: one flat object per line, no `String` in between.
///
/// A byte writer instead of `JSONEncoder`: Codable decode+encode measured ≈ 72,000–83,000
/// lines/s here, far below the ≈ 234,000 rows/s the database accepts.
public struct JSONWriter {
    private var needsComma = false

    public init() {}

    @inline(__always)
    public mutating func beginObject(_ out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        needsComma = false
    }

    @inline(__always)
    public mutating func endObject(_ out: inout [UInt8]) {
        out.append(UInt8(ascii: "}"))
        needsComma = true
    }

    /// Ends the object and the line.
    @inline(__always)
    public mutating func endLine(_ out: inout [UInt8]) {
        out.append(UInt8(ascii: "}"))
        out.append(0x0A)
        needsComma = false
    }

    @inline(__always)
    public mutating func beginArray(_ out: inout [UInt8]) {
        out.append(UInt8(ascii: "["))
        needsComma = false
    }

    @inline(__always)
    public mutating func endArray(_ out: inout [UInt8]) {
        out.append(UInt8(ascii: "]"))
        needsComma = true
    }

    /// Starts an array element (writes the separating comma).
    @inline(__always)
    public mutating func element(_ out: inout [UInt8]) {
        if needsComma { out.append(UInt8(ascii: ",")) }
        needsComma = true
    }

    /// Writes `"key":` (with a comma before it when needed). `key` must need no escaping.
    @inline(__always)
    public mutating func key(_ key: StaticString, _ out: inout [UInt8]) {
        let comma = needsComma
        out.appendReserved(maxCount: key.utf8CodeUnitCount + 4) { w in
            if comma { w.byte(UInt8(ascii: ",")) }
            w.byte(UInt8(ascii: "\""))
            w.bytes(key)
            w.byte(UInt8(ascii: "\""))
            w.byte(UInt8(ascii: ":"))
        }
        needsComma = true
    }

    /// Writes an already-encoded key (as scanned, escapes kept) and its colon.
    @inline(__always)
    public mutating func rawKey(_ escapedKey: UnsafeRawBufferPointer, _ out: inout [UInt8]) {
        let comma = needsComma
        out.appendReserved(maxCount: escapedKey.count + 4) { w in
            if comma { w.byte(UInt8(ascii: ",")) }
            w.byte(UInt8(ascii: "\""))
            if let base = escapedKey.baseAddress { w.bytes(base, escapedKey.count) }
            w.byte(UInt8(ascii: "\""))
            w.byte(UInt8(ascii: ":"))
        }
        needsComma = true
    }

    /// Writes an arbitrary key, escaping it.
    public mutating func key(_ key: String, _ out: inout [UInt8]) {
        if needsComma { out.append(UInt8(ascii: ",")) }
        JSONWriter.appendString(key, &out)
        out.append(UInt8(ascii: ":"))
        needsComma = true
    }

    /// Writes already-encoded JSON (a value span taken from a scanned line).
    @inline(__always)
    public func raw(_ json: UnsafeRawBufferPointer, _ out: inout [UInt8]) {
        out.append(contentsOf: json)
    }

    @inline(__always)
    public func string(_ bytes: UnsafeRawBufferPointer, _ out: inout [UInt8]) {
        JSONWriter.appendString(bytes, &out)
    }

    @inline(__always)
    public func string(_ text: String, _ out: inout [UInt8]) {
        JSONWriter.appendString(text, &out)
    }

    @inline(__always)
    public func int(_ value: Int, _ out: inout [UInt8]) {
        JSONWriter.appendInt(value, &out)
    }

    @inline(__always)
    public func null(_ out: inout [UInt8]) {
        out.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C])
    }

    @inline(__always)
    public func bool(_ value: Bool, _ out: inout [UInt8]) {
        if value {
            out.append(contentsOf: [0x74, 0x72, 0x75, 0x65])
        } else {
            out.append(contentsOf: [0x66, 0x61, 0x6C, 0x73, 0x65])
        }
    }

    // MARK: - Encoding primitives

    /// Appends `text` as a quoted JSON string.
    public static func appendString(_ text: String, _ out: inout [UInt8]) {
        var text = text
        text.withUTF8 { appendString(UnsafeRawBufferPointer($0), &out) }
    }

    /// Appends UTF-8 `bytes` as a quoted JSON string, escaping `"`, `\` and control characters.
    ///
    /// Bytes that are not valid UTF-8 must not reach here: callers check or repair first
    /// (see `repairedUTF8`), since JSON text is UTF-8 by definition.
    public static func appendString(_ bytes: UnsafeRawBufferPointer, _ out: inout [UInt8]) {
        if bytes.count <= escapeSlice {
            out.appendReserved(maxCount: bytes.count * 6 + 2) { $0.string(bytes) }
            return
        }
        // A long text (a reject's raw row) in slices, so the worst-case reservation stays small.
        out.append(UInt8(ascii: "\""))
        var start = 0
        while start < bytes.count {
            let slice = UnsafeRawBufferPointer(rebasing: bytes[start..<min(start + escapeSlice, bytes.count)])
            out.appendReserved(maxCount: slice.count * 6) { $0.escaped(slice) }
            start += slice.count
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Bytes escaped per reservation: an escape is at most 6 bytes, so ≤ 24 KiB reserved.
    private static var escapeSlice: Int { 1 << 12 }

    /// Appends a decimal integer without going through `String`.
    public static func appendInt(_ value: Int, _ out: inout [UInt8]) {
        out.appendReserved(maxCount: 20) { $0.int(value) }
    }
}

/// A write position in spare capacity already reserved for what is written (see
/// `appendReserved`): plain stores, without the uniqueness and capacity checks `Array.append`
/// makes on every call. Those checks, per byte and per key, were ~35 % of `watch`'s
/// instructions (callgrind: `appendString` 11 %, `append(contentsOf:)` 9 %,
/// `swift_isUniquelyReferenced` 6 %, …); the writer must not write past what it reserved.
struct ReservedBytes {
    let base: UnsafeMutablePointer<UInt8>
    var count = 0

    init(_ base: UnsafeMutablePointer<UInt8>) { self.base = base }

    @inline(__always)
    mutating func byte(_ b: UInt8) {
        base[count] = b
        count += 1
    }

    /// Copies `n` bytes (``copyBytes(to:from:count:)``).
    @inline(__always)
    mutating func bytes(_ source: UnsafeRawPointer, _ n: Int) {
        copyBytes(to: UnsafeMutableRawPointer(base + count), from: source, count: n)
        count += n
    }

    @inline(__always)
    mutating func bytes(_ text: StaticString) {
        bytes(text.utf8Start, text.utf8CodeUnitCount)
    }

    /// `,"key":`, before a member's value: the key's length plus 4.
    @inline(__always)
    mutating func memberKey(_ key: StaticString) {
        byte(UInt8(ascii: ","))
        byte(UInt8(ascii: "\""))
        bytes(key)
        byte(UInt8(ascii: "\""))
        byte(UInt8(ascii: ":"))
    }

    /// `"text"` with JSON escapes: at most 6 bytes per input byte, plus 2.
    @inline(__always)
    mutating func string(_ text: UnsafeRawBufferPointer) {
        byte(UInt8(ascii: "\""))
        escaped(text)
        byte(UInt8(ascii: "\""))
    }

    /// The text with JSON escapes, unquoted. Runs that need none are found 8 bytes at a time
    /// and copied in one `memcpy`.
    mutating func escaped(_ text: UnsafeRawBufferPointer) {
        guard let source = text.baseAddress else { return }
        let n = text.count
        // Short texts (a price, an event type) as one or two overlapping words, padded with
        // spaces (which need no escape) below 8 bytes: clean, they are copied whole, without
        // the byte loop below.
        if n < 8 {
            var word: UInt64 = 0x2020_2020_2020_2020
            if n >= 4 {
                word =
                    UInt64(source.loadUnaligned(as: UInt32.self))
                    | UInt64(source.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self)) << 32
            } else {
                for k in 0..<n { withUnsafeMutableBytes(of: &word) { $0[k] = source.load(fromByteOffset: k, as: UInt8.self) } }
            }
            if !ReservedBytes.needsEscape(word) {
                bytes(source, n)
                return
            }
        }
        let p = source.assumingMemoryBound(to: UInt8.self)
        var runStart = 0
        var i = 0
        while i < n {
            if i + 8 <= n {
                if !ReservedBytes.needsEscape(source.loadUnaligned(fromByteOffset: i, as: UInt64.self)) {
                    i += 8
                    continue
                }
            } else if n >= 8 && i > runStart
                && !ReservedBytes.needsEscape(source.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self))
            {
                // The last few bytes, as the (overlapping) last word: clean, so the run ends at n.
                i = n
                break
            }
            let b = p[i]
            if b >= 0x20 && b != UInt8(ascii: "\"") && b != UInt8(ascii: "\\") {
                i += 1
                continue
            }
            bytes(source + runStart, i - runStart)
            byte(UInt8(ascii: "\\"))
            switch b {
            case UInt8(ascii: "\""): byte(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): byte(UInt8(ascii: "\\"))
            case 0x0A: byte(UInt8(ascii: "n"))
            case 0x0D: byte(UInt8(ascii: "r"))
            case 0x09: byte(UInt8(ascii: "t"))
            case 0x08: byte(UInt8(ascii: "b"))
            case 0x0C: byte(UInt8(ascii: "f"))
            default:
                byte(UInt8(ascii: "u"))
                byte(0x30)
                byte(0x30)
                byte(ReservedBytes.hexDigit(b >> 4))
                byte(ReservedBytes.hexDigit(b & 0xF))
            }
            i += 1
            runStart = i
        }
        bytes(source + runStart, n - runStart)
    }

    /// Whether any of the 8 bytes is `"`, `\` or below 0x20 (the classic has-zero-byte and
    /// has-less-than tests: exact as a yes/no, whatever the bytes above 0x7F).
    @inline(__always)
    static func needsEscape(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        let quote = word ^ (ones &* 0x22)
        let backslash = word ^ (ones &* 0x5C)
        let control = (word &- ones &* 0x20) & ~word
        let quoteZero = (quote &- ones) & ~quote
        let backslashZero = (backslash &- ones) & ~backslash
        return (control | quoteZero | backslashZero) & highs != 0
    }

    @inline(__always)
    static func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x57 + v }

    /// A decimal integer: at most 20 bytes.
    @inline(__always)
    mutating func int(_ value: Int) {
        if value == 0 {
            byte(0x30)
            return
        }
        var v = value.magnitude
        var digits = 0
        var probe = v
        while probe > 0 {
            digits += 1
            probe /= 10
        }
        if value < 0 { byte(UInt8(ascii: "-")) }
        var k = count + digits
        count = k
        while v > 0 {
            k -= 1
            base[k] = UInt8(truncatingIfNeeded: v % 10) + 0x30
            v /= 10
        }
    }
}

extension [UInt8] {
    /// Appends what `body` writes, at most `maxCount` bytes, straight into the array's spare
    /// capacity: one capacity check for a whole line instead of one per byte.
    @inline(__always)
    mutating func appendReserved(maxCount: Int, _ body: (inout ReservedBytes) -> Void) {
        append(addingCapacity: maxCount) { span in
            span.withUnsafeMutableBufferPointer { buffer, initialized in
                var w = ReservedBytes(buffer.baseAddress! + initialized)
                body(&w)
                precondition(initialized + w.count <= buffer.count, "ReservedBytes wrote past its reservation")
                initialized += w.count
            }
        }
    }
}

/// Returns `bytes` as valid UTF-8, replacing each invalid sequence with U+FFFD; nil when
/// the input was already valid (the common case, so nothing is copied).
public func repairedUTF8(_ bytes: UnsafeRawBufferPointer) -> [UInt8]? {
    if firstInvalidUTF8(bytes) == nil { return nil }
    let text = String(decoding: bytes, as: UTF8.self)
    return Array(text.utf8)
}

/// The offset of the first byte that does not start a valid UTF-8 sequence, or nil.
public func firstInvalidUTF8(_ bytes: UnsafeRawBufferPointer) -> Int? {
    guard let base = bytes.baseAddress else { return nil }
    let p = base.assumingMemoryBound(to: UInt8.self)
    let n = bytes.count
    var i = 0
    while i < n {
        // ASCII 8 bytes at a time: rows are almost all ASCII.
        if i + 8 <= n && base.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
            i += 8
            continue
        }
        if p[i] < 0x80 {
            i += 1
            continue
        }
        guard let end = utf8SequenceEnd(p, i, n) else { return i }
        i = end
    }
    return nil
}

/// Where the multi-byte UTF-8 sequence starting at `p[i]` ends, or nil when it is invalid
/// (overlong forms, surrogates and code points past U+10FFFF included), per RFC 3629.
@inline(__always)
func utf8SequenceEnd(_ p: UnsafePointer<UInt8>, _ i: Int, _ n: Int) -> Int? {
    var need: Int
    var lo: UInt8 = 0x80
    var hi: UInt8 = 0xBF
    switch p[i] {
    case 0xC2...0xDF: need = 1
    case 0xE0: need = 2; lo = 0xA0
    case 0xE1...0xEC, 0xEE...0xEF: need = 2
    case 0xED: need = 2; hi = 0x9F
    case 0xF0: need = 3; lo = 0x90
    case 0xF1...0xF3: need = 3
    case 0xF4: need = 3; hi = 0x8F
    default: return nil
    }
    guard i + need < n, p[i + 1] >= lo, p[i + 1] <= hi else { return nil }
    var j = i + 2
    while j <= i + need {
        guard p[j] & 0xC0 == 0x80 else { return nil }
        j += 1
    }
    return j
}

/// Copies `n` bytes. Up to 16 bytes (keys, most values) with two overlapping loads and stores
/// of a word each instead of a `memcpy` call: 13 calls per record were ~280 instructions of
/// `watch`'s row, ~10 a row ~250 of validate's (callgrind). Never writes past `target + n`.
@inline(__always)
func copyBytes(to target: UnsafeMutableRawPointer, from source: UnsafeRawPointer, count n: Int) {
    if n >= 8 && n <= 16 {
        let first = source.loadUnaligned(as: UInt64.self)
        let last = source.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)
        target.storeBytes(of: first, as: UInt64.self)
        target.storeBytes(of: last, toByteOffset: n - 8, as: UInt64.self)
    } else if n >= 4 && n < 8 {
        let first = source.loadUnaligned(as: UInt32.self)
        let last = source.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self)
        target.storeBytes(of: first, as: UInt32.self)
        target.storeBytes(of: last, toByteOffset: n - 4, as: UInt32.self)
    } else if n < 4 {
        for k in 0..<n { target.storeBytes(of: source.load(fromByteOffset: k, as: UInt8.self), toByteOffset: k, as: UInt8.self) }
    } else {
        target.copyMemory(from: source, byteCount: n)
    }
}
