import Testing

@testable import Ingest

/// The word-at-a-time pieces of validate's per-row path (uuid text, column names, integers)
/// against slow, obvious references.
@Suite struct WordAtATimeTests {
    /// A byte-by-byte reading of `8-4-4-4-12` hex digits, any case.
    static func referenceKey(_ text: [UInt8]) -> RowKey? {
        guard text.count == 36 else { return nil }
        var high: UInt64 = 0
        var low: UInt64 = 0
        var digits = 0
        for (i, b) in text.enumerated() {
            if i == 8 || i == 13 || i == 18 || i == 23 {
                guard b == UInt8(ascii: "-") else { return nil }
                continue
            }
            let v: UInt64
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt64(b - 0x30)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = UInt64(b - 0x61 + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): v = UInt64(b - 0x41 + 10)
            default: return nil
            }
            if digits < 16 { high = high << 4 | v } else { low = low << 4 | v }
            digits += 1
        }
        return RowKey(high: high, low: low)
    }

    static func referenceText(_ key: RowKey) -> String {
        func hex(_ v: UInt64) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: 16 - s.count) + s
        }
        let h = hex(key.high)
        let l = hex(key.low)
        return "\(h.prefix(8))-\(h.dropFirst(8).prefix(4))-\(h.suffix(4))-\(l.prefix(4))-\(l.suffix(12))"
    }

    @Test func uuidTextIsReadAsByteByByte() {
        var rng = SystemRandomNumberGenerator()
        let base = Array("0123abcd-4567-89ef-ABCD-EF0123456789".utf8)
        // Every byte value at every position: hex digits of both cases pass, anything else
        // (the neighbours of the digit and letter ranges included) fails, as the reference says.
        for position in 0..<36 {
            for byte in 0...255 {
                var text = base
                text[position] = UInt8(byte)
                let got = text.withUnsafeBytes { RowKey($0) }
                #expect(got == WordAtATimeTests.referenceKey(text), "byte \(byte) at \(position)")
            }
        }
        for _ in 0..<2_000 {
            let key = RowKey(high: rng.next(), low: rng.next())
            var text = Array(WordAtATimeTests.referenceText(key).utf8)
            for i in text.indices where Bool.random(using: &rng) && text[i] >= UInt8(ascii: "a") { text[i] -= 0x20 }
            #expect(text.withUnsafeBytes { RowKey($0) } == key)
        }
        #expect(Array("0123abcd-4567-89ef-ABCD-EF012345678".utf8).withUnsafeBytes { RowKey($0) } == nil)
        #expect(Array("0123abcd-4567-89ef-ABCD-EF01234567890".utf8).withUnsafeBytes { RowKey($0) } == nil)
    }

    @Test func uuidIsWrittenInLowercase() {
        var rng = SystemRandomNumberGenerator()
        var keys = [
            RowKey(high: 0, low: 0), RowKey(high: .max, low: .max), RowKey(high: 0x0123_4567_89AB_CDEF, low: 0xFEDC_BA98_7654_3210),
        ]
        for _ in 0..<2_000 { keys.append(RowKey(high: rng.next(), low: rng.next())) }
        for key in keys {
            var bytes = [UInt8](repeating: 0, count: 36)
            let count = bytes.withUnsafeMutableBufferPointer { key.writeText(to: $0.baseAddress!) }
            #expect(count == 36)
            #expect(String(decoding: bytes, as: UTF8.self) == WordAtATimeTests.referenceText(key))
            #expect(key.text == WordAtATimeTests.referenceText(key))
        }
    }

    @Test func columnNamesOfEveryLengthMatchExactly() {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz_0123456789".utf8)
        var names: [[UInt8]] = [[]]
        for length in 1...24 { names.append((0..<length).map { alphabet[($0 * 7 + length) % alphabet.count] }) }
        let keys = ColumnKeys(names.map { String(decoding: $0, as: UTF8.self) })
        for (c, name) in names.enumerated() {
            #expect(name.withUnsafeBytes { keys.column($0) } == c)
            // One byte changed anywhere, one byte more or less: no column (or another one
            // only when that is exactly its name).
            for i in name.indices {
                var other = name
                other[i] = other[i] == UInt8(ascii: "x") ? UInt8(ascii: "y") : UInt8(ascii: "x")
                let expected = names.firstIndex(of: other)
                #expect(other.withUnsafeBytes { keys.column($0) } == expected, "\(name) with byte \(i) changed")
            }
            for other in [name + [UInt8(ascii: "x")], Array(name.dropLast()), Array(name.dropFirst())] where other != name {
                #expect(other.withUnsafeBytes { keys.column($0) } == names.firstIndex(of: other))
            }
        }
    }

    @Test func integersAreWrittenInTheirNormalForm() throws {
        let contract = try Contract.parse(
            """
            version: 1
            table: public.t
            columns:
              - name: n
                data_type: bigint
            """, path: "t.yaml")
        let parser = ColumnValueParser(contract.columns[0])
        let cases: [(String, String?)] = [
            ("0", "0"), ("-0", "0"), ("00", "0"), ("007", "7"), ("-007", "-7"), ("5", "5"), ("-5", "-5"),
            ("123456789012345678", "123456789012345678"), ("-123456789012345678", "-123456789012345678"),
            ("000000000000000012", "12"), ("9223372036854775807", "9223372036854775807"),
            ("-9223372036854775808", "-9223372036854775808"), ("9223372036854775808", nil),
            ("0009223372036854775807", "9223372036854775807"), ("+5", nil), ("1.0", nil), ("-", nil), ("1a", nil),
        ]
        for (text, expected) in cases {
            #expect(parser.normalisedForm(of: text).map { String(decoding: $0, as: UTF8.self) } == expected, "\(text)")
        }
    }
}
