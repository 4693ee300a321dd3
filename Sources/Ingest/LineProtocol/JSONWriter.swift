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
        if needsComma { out.append(UInt8(ascii: ",")) }
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: UnsafeRawBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
        out.append(UInt8(ascii: "\""))
        out.append(UInt8(ascii: ":"))
        needsComma = true
    }

    /// Writes an already-encoded key (as scanned, escapes kept) and its colon.
    @inline(__always)
    public mutating func rawKey(_ escapedKey: UnsafeRawBufferPointer, _ out: inout [UInt8]) {
        if needsComma { out.append(UInt8(ascii: ",")) }
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: escapedKey)
        out.append(UInt8(ascii: "\""))
        out.append(UInt8(ascii: ":"))
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
        out.append(UInt8(ascii: "\""))
        let p = bytes.bindMemory(to: UInt8.self)
        var runStart = 0
        var i = 0
        let n = p.count
        while i < n {
            let b = p[i]
            if b >= 0x20 && b != UInt8(ascii: "\"") && b != UInt8(ascii: "\\") {
                i += 1
                continue
            }
            if i > runStart { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<i])) }
            out.append(UInt8(ascii: "\\"))
            switch b {
            case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
            case 0x0A: out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(UInt8(ascii: "r"))
            case 0x09: out.append(UInt8(ascii: "t"))
            case 0x08: out.append(UInt8(ascii: "b"))
            case 0x0C: out.append(UInt8(ascii: "f"))
            default:
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [UInt8(ascii: "u"), 0x30, 0x30, hex[Int(b >> 4)], hex[Int(b & 0xF)]])
            }
            i += 1
            runStart = i
        }
        if n > runStart { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<n])) }
        out.append(UInt8(ascii: "\""))
    }

    /// Appends a decimal integer without going through `String`.
    public static func appendInt(_ value: Int, _ out: inout [UInt8]) {
        if value == 0 {
            out.append(0x30)
            return
        }
        var v = value.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes of scratch, enough for 20 digits
        let count = withUnsafeMutableBytes(of: &digits) { scratch -> Int in
            var k = 24
            while v > 0 {
                k -= 1
                scratch[k] = UInt8(truncatingIfNeeded: v % 10) + 0x30
                v /= 10
            }
            if value < 0 {
                k -= 1
                scratch[k] = UInt8(ascii: "-")
            }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[k..<24]))
            return 24 - k
        }
        _ = count
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
