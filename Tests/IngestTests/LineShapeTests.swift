import Testing

@testable import Ingest

/// What one scan gave: every member's fields and every protocol key's slot, or the error.
private struct ScanOutcome: Equatable, CustomStringConvertible {
    var members: [String] = []
    var slots: [Int] = []
    var error: String?

    init(_ scanner: inout JSONObjectScanner, _ bytes: [UInt8]) {
        do {
            try bytes.withUnsafeBytes { try scanner.scan($0) }
            members = scanner.members.map {
                "\($0.keyStart)-\($0.keyEnd)\($0.keyEscaped ? "e" : "") \($0.valueStart)-\($0.valueEnd) \($0.kind) \($0.valueEscaped) \($0.protocolKey)"
            }
            slots = ProtocolKey.allCases.map { scanner.keySlots[$0] }
        } catch let error as JSONSyntaxError {
            self.error = "\(error.offset): \(error.problem)"
        } catch {
            self.error = "not a JSONSyntaxError: \(error)"
        }
    }

    var description: String { error ?? "\(members) \(slots)" }
}

/// A scanner used line after line (so the lines after the first may take the shape of the one
/// before) must give what a fresh scanner gives each line: the same members, slots and errors.
@Suite struct LineShapeTests {
    private func expectSameAsFresh(_ lines: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        var reused = JSONObjectScanner()
        for text in lines {
            let bytes = Array(text.utf8)
            var fresh = JSONObjectScanner()
            let expected = ScanOutcome(&fresh, bytes)
            let got = ScanOutcome(&reused, bytes)
            #expect(got == expected, "\(text)", sourceLocation: sourceLocation)
        }
    }

    @Test func repeatedKeysTakeTheShapeAndGiveTheSameMembers() {
        let record = #"{"kind":"record","file":"a.csv","line":2,"event_id":"x","user_id":"7","price":null,"event_timestamp":"t"}"#
        expectSameAsFresh([
            record,
            #"{"kind":"record","file":"a.csv","line":3,"event_id":"y\"z","user_id":"70","price":"1.5","event_timestamp":"t\u00e9"}"#,
            #"{"kind":"record","file":"a.csv","line":4,"event_id":{"n":[1,2]},"user_id":-1.5e3,"price":true,"event_timestamp":"é"}"#,
        ])
    }

    @Test func aDifferentKeyOfTheSameLengthIsNotTakenForTheRemembered() {
        expectSameAsFresh([
            #"{"kind":"record","line":2}"#,
            #"{"kine":"record","line":2}"#,
            #"{"kind":"record","lina":2}"#,
            #"{"a":1,"b":2}"#,
            #"{"a":1,"c":2}"#,
            // Keys of 17 and more bytes: the bytes between the first and last words differ.
            #"{"a_long_key_name_number_one":1}"#,
            #"{"a_long_key_nXme_number_one":1}"#,
            #"{"a_long_key_name_number_one":1}"#,
        ])
    }

    @Test func membersAddedOrMissingFallBackToTheGeneralScan() {
        expectSameAsFresh([
            #"{"kind":"record","line":2}"#,
            #"{"kind":"record","line":2,"extra":true}"#,
            #"{"kind":"record","line":2}"#,
            #"{"kind":"record"}"#,
            #"{"kind":"record","line":2}"#,
            "{}",
            #"{"kind":"record","line":2}"#,
            #"{"kind":"record","kind":"reject","line":2}"#,
            #"{"kind":"record","kind":"reject","line":3}"#,
        ])
    }

    @Test func whitespaceAndEscapedKeysAreScannedByTheGeneralPath() {
        expectSameAsFresh([
            #"{"kind":"record","line":2}"#,
            #"{ "kind":"record","line":2}"#,
            #"{"kind" :"record","line":2}"#,
            #"{"kind": "record","line":2}"#,
            #"{"kind":"record" ,"line":2}"#,
            #"{"kind":"record","line":2} "#,
            #"{"ki\u006ed":"record","line":2}"#,
            #"{"ki\u006ed":"record","line":3}"#,
            #"{"kind":"record","line":2}"#,
            #"{"":1}"#,
            #"{"":2}"#,
        ])
    }

    @Test func errorsAfterRememberedKeysAreTheGeneralPathsErrors() {
        expectSameAsFresh([
            #"{"kind":"record","line":2}"#,
            #"{"kind":"record","line":02}"#,
            #"{"kind":"rec"#,
            #"{"kind":"record","line":"#,
            #"{"kind":"#,
            #"{"kind""#,
            #"{"kind":"record","line":2}}"#,
            #"{"kind":"record","line":2"#,
            #"{"kind":"re\x"}"#,
            #"{"kind":"record","line":2,}"#,
            #"{"kind":"record","line":[1,}"#,
            "",
            #"{"kind":"record","line":2}"#,
        ])
    }

    /// Lines drawn from a few shapes, each mutated now and then (a byte changed, cut short or
    /// doubled), scanned in a seeded random order.
    @Test func randomLinesAgreeWithAFreshScanner() {
        let shapes = [
            #"{"kind":"record","file":"batch_1.csv","line":12,"event_id":"63cbe1e4-5932-4dd7-844c-3cd7f43c661c","user_id":45245,"price":null}"#,
            #"{"kind":"reject","file":"batch_1.csv","line":13,"reasons":[{"field":"price","rule":"type"}],"raw":"a,b"}"#,
            #"{"kind":"eof","file":"batch_1.csv","rows":10,"bytes":200,"sha256":"ab"}"#,
            #"{"a_key_longer_than_sixteen":"v","b":1,"cc":"\u00e9\n"}"#,
        ]
        let alphabet = Array(#"{}[]":,\ "ab01-.eE\#t"#.utf8) + [0x0A, 0xC3, 0xA9, 0xFF]
        var rng = SplitMix(seed: 23)
        var raw: [[UInt8]] = []
        for _ in 0..<6_000 {
            var bytes = Array(shapes[Int(rng.next() % UInt64(shapes.count))].utf8)
            switch rng.next() % 6 {
            case 0: bytes[Int(rng.next() % UInt64(bytes.count))] = alphabet[Int(rng.next() % UInt64(alphabet.count))]
            case 1: bytes.removeLast(Int(rng.next() % UInt64(bytes.count)))
            case 2: bytes.insert(alphabet[Int(rng.next() % UInt64(alphabet.count))], at: Int(rng.next() % UInt64(bytes.count)))
            default: break
            }
            raw.append(bytes)
        }
        var reused = JSONObjectScanner()
        var matched = 0
        for bytes in raw {
            var fresh = JSONObjectScanner()
            let expected = ScanOutcome(&fresh, bytes)
            let got = ScanOutcome(&reused, bytes)
            #expect(got == expected, "\(String(decoding: bytes, as: UTF8.self))")
            if expected.error == nil { matched += 1 }
        }
        // Most lines are valid, so the shapes were taken and left many times.
        #expect(matched > 3_000)
    }
}
