#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An event id as its 128 bits: what duplicate tracking stores (16 bytes, not a 36-byte string).
public struct EventID: Hashable, Sendable {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Reads `8-4-4-4-12` hex digits, any case. Nil for anything else (braces, no dashes, …).
    public init?(_ text: UnsafeRawBufferPointer) {
        guard text.count == 36 else { return nil }
        var high: UInt64 = 0
        var low: UInt64 = 0
        var nibbles = 0
        for i in 0..<36 {
            let c = text[i]
            if i == 8 || i == 13 || i == 18 || i == 23 {
                guard c == UInt8(ascii: "-") else { return nil }
                continue
            }
            let v: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): v = c - UInt8(ascii: "A") + 10
            default: return nil
            }
            if nibbles < 16 { high = high << 4 | UInt64(v) } else { low = low << 4 | UInt64(v) }
            nibbles += 1
        }
        self.init(high: high, low: low)
    }

    /// Appends the canonical lowercase form, `6f1c…-…`.
    public func appendText(to out: inout [UInt8]) {
        let hex: StaticString = "0123456789abcdef"
        let digits = hex.utf8Start
        for i in 0..<32 {
            if i == 8 || i == 12 || i == 16 || i == 20 { out.append(UInt8(ascii: "-")) }
            let word = i < 16 ? high : low
            let shift = UInt64(60 - (i % 16) * 4)
            out.append(digits[Int((word >> shift) & 0xF)])
        }
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
