#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An event id as its 128 bits: what duplicate tracking stores (16 bytes, not a 36-byte string),
/// and what load writes as a binary uuid.
@frozen public struct RowKey: Hashable, Sendable {
    public var high: UInt64
    public var low: UInt64

    @inlinable public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Reads `8-4-4-4-12` hex digits, any case. Nil for anything else (braces, no dashes, …).
    ///
    /// Eight digits per word (the groups of four paired up), as `load`'s binary uuid: a table
    /// lookup per digit was ~200 instructions per uuid, and validate reads the key twice a row
    /// (its column, then the row key), callgrind. Inlinable: load's binary uuid is this too.
    @inlinable @inline(__always)
    public init?(_ text: UnsafeRawBufferPointer) {
        guard text.count == 36, let p = text.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
        guard p[8] == UInt8(ascii: "-"), p[13] == UInt8(ascii: "-"), p[18] == UInt8(ascii: "-"), p[23] == UInt8(ascii: "-")
        else { return nil }
        let r = UnsafeRawPointer(p)
        @inline(__always) func word(_ offset: Int) -> UInt64 {
            UInt64(littleEndian: r.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        }
        @inline(__always) func half(_ offset: Int) -> UInt64 {
            UInt64(UInt32(littleEndian: r.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        }
        guard let g1 = RowKey.hexWord(word(0)), let g23 = RowKey.hexWord(half(9) | half(14) << 32),
            let g45 = RowKey.hexWord(half(19) | half(24) << 32), let g5 = RowKey.hexWord(word(28))
        else { return nil }
        self.init(high: UInt64(g1) << 32 | UInt64(g23), low: UInt64(g45) << 32 | UInt64(g5))
    }

    /// Eight hex digits (either case), the first in the lowest byte of `w`, as a 32-bit value;
    /// nil when one is not a hex digit (`0-9`, `a-f`, `A-F`). Range tests on bytes known to be
    /// below 0x80 cannot carry or borrow into their neighbours.
    @inlinable @inline(__always)
    static func hexWord(_ w: UInt64) -> UInt32? {
        let highs: UInt64 = 0x8080_8080_8080_8080
        let ones: UInt64 = 0x0101_0101_0101_0101
        guard w & highs == 0 else { return nil }
        @inline(__always) func atLeast(_ x: UInt64, _ m: UInt64) -> UInt64 { (x &+ (0x80 - m) &* ones) & highs }
        @inline(__always) func atMost(_ x: UInt64, _ n: UInt64) -> UInt64 { ((0x80 + n) &* ones &- x) & highs }
        let lower = w | 0x2020_2020_2020_2020
        let digit = atLeast(w, 0x30) & atMost(w, 0x39)
        let letter = atLeast(lower, 0x61) & atMost(lower, 0x66)
        guard digit | letter == highs else { return nil }
        let nibbles = (w & 0x0F0F_0F0F_0F0F_0F0F) &+ (letter >> 7) &* 9
        let pairs = ((nibbles << 4) | (nibbles >> 8)) & 0x00FF_00FF_00FF_00FF
        return UInt32(
            truncatingIfNeeded: (pairs & 0xFF) << 24 | (pairs >> 16 & 0xFF) << 16 | (pairs >> 32 & 0xFF) << 8 | (pairs >> 48 & 0xFF))
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
    /// Eight digits per word store (a byte per digit was ~150 instructions per uuid).
    @inline(__always)
    func writeText(to p: UnsafeMutablePointer<UInt8>) -> Int {
        let r = UnsafeMutableRawPointer(p)
        let (h1, h2) = (RowKey.hexText(UInt32(truncatingIfNeeded: high >> 32)), RowKey.hexText(UInt32(truncatingIfNeeded: high)))
        let (l1, l2) = (RowKey.hexText(UInt32(truncatingIfNeeded: low >> 32)), RowKey.hexText(UInt32(truncatingIfNeeded: low)))
        r.storeBytes(of: h1.littleEndian, toByteOffset: 0, as: UInt64.self)
        r.storeBytes(of: UInt32(truncatingIfNeeded: h2).littleEndian, toByteOffset: 9, as: UInt32.self)
        r.storeBytes(of: UInt32(truncatingIfNeeded: h2 >> 32).littleEndian, toByteOffset: 14, as: UInt32.self)
        r.storeBytes(of: UInt32(truncatingIfNeeded: l1).littleEndian, toByteOffset: 19, as: UInt32.self)
        r.storeBytes(of: UInt32(truncatingIfNeeded: l1 >> 32).littleEndian, toByteOffset: 24, as: UInt32.self)
        r.storeBytes(of: l2.littleEndian, toByteOffset: 28, as: UInt64.self)
        p[8] = UInt8(ascii: "-")
        p[13] = UInt8(ascii: "-")
        p[18] = UInt8(ascii: "-")
        p[23] = UInt8(ascii: "-")
        return 36
    }

    /// The eight lowercase hex digits of `v`, the first (most significant) in the lowest byte.
    @inline(__always)
    static func hexText(_ v: UInt32) -> UInt64 {
        var x = UInt64(v)
        x = (x | x << 16) & 0x0000_FFFF_0000_FFFF
        x = (x | x << 8) & 0x00FF_00FF_00FF_00FF
        x = (x | x << 4) & 0x0F0F_0F0F_0F0F_0F0F
        x = x.byteSwapped  // nibble 7 (the first digit) to byte 0
        let letters = ((x &+ 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101
        return x &+ 0x3030_3030_3030_3030 &+ letters &* 0x27
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
