#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An event id as its 128 bits: what duplicate tracking stores (16 bytes, not a 36-byte string).
public struct RowKey: Hashable, Sendable {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Reads `8-4-4-4-12` hex digits, any case. Nil for anything else (braces, no dashes, …).
    @inline(__always)
    public init?(_ text: UnsafeRawBufferPointer) {
        guard text.count == 36, text[8] == UInt8(ascii: "-"), text[13] == UInt8(ascii: "-"),
            text[18] == UInt8(ascii: "-"), text[23] == UInt8(ascii: "-")
        else { return nil }
        // A table lookup per digit; 0xFF marks a non-hex byte, OR-ed into `bad`.
        var bad: UInt8 = 0
        @inline(__always) func hex(_ from: Int, _ to: Int, _ acc: inout UInt64) {
            for i in from..<to {
                let v = hexValue[Int(text[i])]
                bad |= v
                acc = acc << 4 | UInt64(v & 0xF)
            }
        }
        var high: UInt64 = 0
        var low: UInt64 = 0
        hex(0, 8, &high)
        hex(9, 13, &high)
        hex(14, 18, &high)
        hex(19, 23, &low)
        hex(24, 36, &low)
        guard bad & 0xF0 == 0 else { return nil }
        self.init(high: high, low: low)
    }

    /// Appends the canonical lowercase form, `6f1c…-…`, in one append.
    @inline(__always)
    public func appendText(to out: inout [UInt8]) {
        var buffer: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)  // 40 bytes of scratch
        withUnsafeMutableBytes(of: &buffer) { b in
            let digits: StaticString = "0123456789abcdef"
            let d = digits.utf8Start
            var k = 0
            for i in 0..<32 {
                if i == 8 || i == 12 || i == 16 || i == 20 {
                    b[k] = UInt8(ascii: "-")
                    k += 1
                }
                let word = i < 16 ? high : low
                b[k] = d[Int((word >> UInt64(60 - (i & 15) * 4)) & 0xF)]
                k += 1
            }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[0..<36]))
        }
    }

    /// Writes the canonical lowercase form (36 bytes) at `p`; returns 36.
    @inline(__always)
    func writeText(to p: UnsafeMutablePointer<UInt8>) -> Int {
        let digits: StaticString = "0123456789abcdef"
        let d = digits.utf8Start
        @inline(__always) func hex(_ word: UInt64, _ firstNibble: Int, _ count: Int, _ at: Int) {
            for k in 0..<count {
                p[at + k] = d[Int(truncatingIfNeeded: (word >> UInt64(60 - (firstNibble + k) * 4)) & 0xF)]
            }
        }
        hex(high, 0, 8, 0)
        p[8] = UInt8(ascii: "-")
        hex(high, 8, 4, 9)
        p[13] = UInt8(ascii: "-")
        hex(high, 12, 4, 14)
        p[18] = UInt8(ascii: "-")
        hex(low, 0, 4, 19)
        p[23] = UInt8(ascii: "-")
        hex(low, 4, 12, 24)
        return 36
    }

    public var text: String {
        var out: [UInt8] = []
        appendText(to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}

/// The byte-level checks behind each field rule. No `String`, no Foundation: `validate` runs
/// them on every row.
public enum FieldRules {
    /// `bytes` without leading and trailing spaces and tabs.
    @inline(__always)
    public static func trimmed(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        var start = 0
        var end = bytes.count
        while start < end && (bytes[start] == 0x20 || bytes[start] == 0x09) { start += 1 }
        while end > start && (bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09) { end -= 1 }
        return UnsafeRawBufferPointer(rebasing: bytes[start..<end])
    }

    public enum IntegerParse: Equatable, Sendable {
        case value(Int)
        /// Not `-?digits`: decimals (`12.0`), exponents, `+5`, letters.
        case notInteger
        /// An integer outside 1…2147483647.
        case outOfRange
    }

    /// An id in 1…2147483647 (PostgreSQL `integer`), from already-trimmed bytes.
    @inline(__always)
    public static func parseID(_ text: UnsafeRawBufferPointer) -> IntegerParse {
        let n = text.count
        guard n > 0 else { return .notInteger }
        var i = 0
        let negative = text[0] == UInt8(ascii: "-")
        if negative { i = 1 }
        guard i < n else { return .notInteger }
        var value = 0
        var overflow = false
        while i < n {
            let d = Int(text[i]) &- 0x30
            guard d >= 0 && d <= 9 else { return .notInteger }
            if value > 2_147_483_647 { overflow = true } else { value = value * 10 + d }
            i += 1
        }
        if negative || overflow || value < 1 || value > 2_147_483_647 { return .outOfRange }
        return .value(value)
    }

    public enum PriceParse: Equatable, Sendable {
        case cents(Int)
        /// Not `-?digits[.digits]`: `1e3`, `NaN`, `+5`, `.5`, `5.`, `1,50`.
        case notDecimal
        /// Zero or negative (`0`, `-0`, `-12.50`).
        case notPositive
        /// Three or more fractional digits, even zeros (`0.001`, `12.500`).
        case tooManyPlaces
        /// 1000000 or more.
        case tooLarge
    }

    /// A price in cents, from already-trimmed bytes: a decimal > 0 and < 1000000 with at most
    /// two fractional digits.
    @inline(__always)
    public static func parsePrice(_ text: UnsafeRawBufferPointer) -> PriceParse {
        let n = text.count
        var i = 0
        let negative = n > 0 && text[0] == UInt8(ascii: "-")
        if negative { i = 1 }
        var units = 0
        var integerDigits = 0
        var significant = 0
        while i < n, case let d = Int(text[i]) &- 0x30, d >= 0 && d <= 9 {
            if significant > 0 || d != 0 { significant += 1 }
            if significant <= 8 { units = units * 10 + d }
            integerDigits += 1
            i += 1
        }
        guard integerDigits > 0 else { return .notDecimal }
        var cents = 0
        var places = 0
        var nonZeroFraction = false
        if i < n && text[i] == UInt8(ascii: ".") {
            i += 1
            while i < n, case let d = Int(text[i]) &- 0x30, d >= 0 && d <= 9 {
                if places < 2 { cents = cents * 10 + d }
                if d != 0 { nonZeroFraction = true }
                places += 1
                i += 1
            }
            guard places > 0 else { return .notDecimal }
        }
        guard i == n else { return .notDecimal }
        if places == 1 { cents *= 10 }
        if negative || (units == 0 && !nonZeroFraction) { return .notPositive }
        if places > 2 { return .tooManyPlaces }
        if significant > 6 { return .tooLarge }
        return .cents(units * 100 + cents)
    }

    /// Appends cents as a decimal with exactly two places: `1250` → `12.50`.
    @inline(__always)
    public static func appendPrice(cents: Int, to out: inout [UInt8]) {
        JSONWriter.appendInt(cents / 100, &out)
        out.append(UInt8(ascii: "."))
        out.append(UInt8(0x30 + cents % 100 / 10))
        out.append(UInt8(0x30 + cents % 10))
    }
}

/// Hex digit values by byte; 0xFF for bytes that are not hex digits.
private let hexValue: [UInt8] = (0..<256).map { b -> UInt8 in
    switch b {
    case 0x30...0x39: UInt8(b - 0x30)
    case 0x41...0x46: UInt8(b - 0x41 + 10)
    case 0x61...0x66: UInt8(b - 0x61 + 10)
    default: 0xFF
    }
}
