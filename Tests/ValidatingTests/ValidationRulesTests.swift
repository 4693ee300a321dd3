import Foundation
import Testing

@testable import Ingest
@testable import Validating

/// 2024-01-30T12:00:00Z: the validator's clock in these tests.
let fixedNow = UTCTimestamp(parsing: "2024-01-30T12:00:00Z")!

/// Runs lines through a `StreamValidator` with a fixed clock; returns the output lines.
func runValidator(_ lines: [String], rules: ValidationRules = ValidationRules(), rejectsOnly: Bool = false) -> [String] {
    var stage = StreamValidator(rules: rules, rejectsOnly: rejectsOnly, clock: { fixedNow })
    var out: [UInt8] = []
    for (index, line) in lines.enumerated() {
        var copy = line
        _ = copy.withUTF8 { stage.process(UnsafeRawBufferPointer($0), inputLine: index + 1, into: &out) }
    }
    return String(decoding: out, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
}

/// The reasons of the single output line for a record built from `fields` (JSON values).
func reasons(for overrides: [String: String], rules: ValidationRules = ValidationRules()) -> [RejectReason] {
    let out = runValidator([recordJSON(overrides)], rules: rules)
    var bytes = Array(out[0].utf8)
    return bytes.withUnsafeMutableBytes { raw -> [RejectReason] in
        var decoder = LineDecoder()
        return (try? decoder.decode(UnsafeRawBufferPointer(raw)))?.reasons() ?? []
    }
}

let validFields: [(String, String)] = [
    ("event_id", "\"6F1C2A3B-1111-4222-8333-444455556666\""), ("user_id", "\" 42\""), ("product_id", "\"7\""),
    ("event_type", "\"purchase\""), ("price", "\"12.5\""), ("event_timestamp", "\"2024-01-30 10:15:23.123\""),
]

/// A record line: the valid fields with `overrides` (JSON text; "<absent>" removes the key).
func recordJSON(_ overrides: [String: String], prefix: String = "\"kind\":\"record\",\"file\":\"a.csv\",\"line\":2") -> String {
    var parts = [prefix]
    for (key, value) in validFields {
        let v = overrides[key] ?? value
        if v != "<absent>" { parts.append("\"\(key)\":\(v)") }
    }
    return "{" + parts.joined(separator: ",") + "}"
}

@Suite struct ValidationRulesTests {
    @Test func normalisesAValidPurchase() {
        let out = runValidator([recordJSON([:])])
        #expect(
            out == [
                #"{"kind":"record","file":"a.csv","line":2,"event_id":"6f1c2a3b-1111-4222-8333-444455556666","user_id":42,"product_id":7,"event_type":"purchase","price":"12.50","event_timestamp":"2024-01-30T10:15:23.123Z"}"#
            ])
    }

    @Test func normalisesAViewAndAddsKindAndPrice() {
        let line =
            #"{"event_id":"6f1c2a3b-1111-4222-8333-444455556666","user_id":1,"product_id":2147483647,"event_type":" VIEW ","event_timestamp":"2024-01-30T10:15:23+05:45","x":{"a":[1,"b"]},"y":null}"#
        #expect(
            runValidator([line]) == [
                #"{"kind":"record","event_id":"6f1c2a3b-1111-4222-8333-444455556666","user_id":1,"product_id":2147483647,"event_type":"view","event_timestamp":"2024-01-30T04:30:23.000Z","x":{"a":[1,"b"]},"y":null,"price":null}"#
            ])
    }

    @Test(
        arguments: [
            // (field, JSON value, expected reason, expected value in the reason)
            ("event_id", "<absent>", "required", nil),
            ("event_id", "null", "required", nil),
            ("event_id", "\"\"", "required", nil),
            ("event_id", "\"   \"", "required", nil),
            ("event_id", "\"6f1c2a3b11114222833344445555666\"", "not a UUID", "6f1c2a3b11114222833344445555666"),
            ("event_id", "\"{6f1c2a3b-1111-4222-8333-444455556666}\"", "not a UUID", "{6f1c2a3b-1111-4222-8333-444455556666}"),
            ("event_id", "\"6g1c2a3b-1111-4222-8333-444455556666\"", "not a UUID", "6g1c2a3b-1111-4222-8333-444455556666"),
            ("event_id", "42", "not a UUID", "42"),
            ("user_id", "<absent>", "required", nil),
            ("user_id", "\"\"", "required", nil),
            ("user_id", "\"12.0\"", "not an integer", "12.0"),
            ("user_id", "12.0", "not an integer", "12.0"),
            ("user_id", "\"1e3\"", "not an integer", "1e3"),
            ("user_id", "1e3", "not an integer", "1e3"),
            ("user_id", "\"+5\"", "not an integer", "+5"),
            ("user_id", "\"abc\"", "not an integer", "abc"),
            ("user_id", "true", "not an integer", "true"),
            ("user_id", "\"0\"", "out of range 1…2147483647", "0"),
            ("user_id", "\"-5\"", "out of range 1…2147483647", "-5"),
            ("user_id", "\"2147483648\"", "out of range 1…2147483647", "2147483648"),
            ("user_id", "99999999999999999999999", "out of range 1…2147483647", "99999999999999999999999"),
            ("product_id", "\"-0\"", "out of range 1…2147483647", "-0"),
            ("product_id", "\"NaN\"", "not an integer", "NaN"),
            ("event_type", "<absent>", "required", nil),
            ("event_type", "\"\"", "required", nil),
            ("event_type", "\"click\"", "unknown event type (expected view, purchase)", "click"),
            ("event_type", "1", "unknown event type (expected view, purchase)", "1"),
            ("price", "<absent>", "required for a purchase", nil),
            ("price", "null", "required for a purchase", nil),
            ("price", "\"\"", "required for a purchase", nil),
            ("price", "\"0\"", "must be > 0", "0"),
            ("price", "\"0.00\"", "must be > 0", "0.00"),
            ("price", "\"-0\"", "must be > 0", "-0"),
            ("price", "\"-12.50\"", "must be > 0", "-12.50"),
            ("price", "\"0.001\"", "more than two decimal places", "0.001"),
            ("price", "\"12.500\"", "more than two decimal places", "12.500"),
            ("price", "\"1e3\"", "not a decimal", "1e3"),
            ("price", "\"NaN\"", "not a decimal", "NaN"),
            ("price", "\"+5\"", "not a decimal", "+5"),
            ("price", "\".5\"", "not a decimal", ".5"),
            ("price", "\"5.\"", "not a decimal", "5."),
            ("price", "\"1,50\"", "not a decimal", "1,50"),
            ("price", "true", "not a decimal", "true"),
            ("price", "\"1000000\"", "must be < 1000000", "1000000"),
            ("price", "\"1000000.00\"", "must be < 1000000", "1000000.00"),
            ("event_timestamp", "<absent>", "required", nil),
            ("event_timestamp", "\"\"", "required", nil),
            ("event_timestamp", "\"yesterday\"", "not a date-time", "yesterday"),
            ("event_timestamp", "1706609723", "not a date-time", "1706609723"),
            ("event_timestamp", "\"2024-02-30 10:00:00\"", "no such date", "2024-02-30 10:00:00"),
            ("event_timestamp", "\"2023-02-29 10:00:00\"", "no such date", "2023-02-29 10:00:00"),
            ("event_timestamp", "\"2024-01-30T10:00:60Z\"", "leap second not at 23:59:60 UTC", "2024-01-30T10:00:60Z"),
            ("event_timestamp", "\"0000-01-01T00:00:00Z\"", "year out of range 0001…9999", "0000-01-01T00:00:00Z"),
            ("event_timestamp", "\"2024-01-30T12:05:00.001Z\"", "more than 5 minutes in the future", "2024-01-30T12:05:00.001Z"),
            ("event_timestamp", "\"9999-12-31T23:59:59Z\"", "more than 5 minutes in the future", "9999-12-31T23:59:59Z"),
        ] as [(String, String, String, String?)])
    func rejects(_ field: String, _ value: String, _ reason: String, _ shown: String?) {
        #expect(reasons(for: [field: value]) == [RejectReason(field: field, reason: reason, value: shown)])
    }

    @Test(arguments: [
        ("user_id", "\"2147483647\""), ("user_id", "\"  1  \""), ("user_id", "\"007\""), ("product_id", "1"),
        ("price", "\"12\""), ("price", "\"12.50\""), ("price", "12.5"), ("price", "\"999999.99\""), ("price", "\"0.01\""),
        ("event_type", "\"PURCHASE\""), ("event_id", "\" 6f1c2a3b-1111-4222-8333-444455556666 \""),
        ("event_timestamp", "\"2024-01-30T12:05:00Z\""),  // exactly 5 minutes ahead
        ("event_timestamp", "\"1969-07-20T20:17:40Z\""), ("event_timestamp", "\"2020-02-29 00:00:00\""),
        ("event_timestamp", "\"2016-12-31T23:59:60Z\""),
    ])
    func accepts(_ field: String, _ value: String) {
        #expect(reasons(for: [field: value]) == [])
        #expect(runValidator([recordJSON([field: value])])[0].hasPrefix(#"{"kind":"record""#))
    }

    @Test(arguments: [
        ("12", "12.00"), ("12.5", "12.50"), ("12.50", "12.50"), ("0.01", "0.01"), ("007.1", "7.10"), ("999999.99", "999999.99"),
    ])
    func priceNormalisation(_ input: String, _ output: String) {
        let out = runValidator([recordJSON(["price": "\"\(input)\""])])[0]
        #expect(out.contains("\"price\":\"\(output)\""))
    }

    @Test(arguments: ["\"12.50\"", "\"0\"", "\"abc\"", "0"])
    func viewPriceMustBeEmpty(_ price: String) {
        let found = reasons(for: ["event_type": "\"view\"", "price": price])
        #expect(found.count == 1)
        #expect(found.first?.field == "price" && found.first?.reason == "must be empty for a view")
    }

    @Test(arguments: ["<absent>", "null", "\"\"", "\"  \""])
    func viewPriceEmptyForms(_ price: String) {
        let out = runValidator([recordJSON(["event_type": "\"view\"", "price": price])])[0]
        #expect(out.contains(#""price":null"#))
        #expect(out.hasPrefix(#"{"kind":"record""#))
    }

    @Test func collectsEveryReason() {
        let found = reasons(for: [
            "event_id": "\"x\"", "user_id": "\"0\"", "product_id": "\"1.5\"", "event_type": "\"click\"", "price": "\"-1\"",
            "event_timestamp": "\"soon\"",
        ])
        #expect(found.map(\.field) == ["event_id", "user_id", "product_id", "event_type", "price", "event_timestamp"])
        #expect(
            found.map(\.reason) == [
                "not a UUID", "out of range 1…2147483647", "not an integer", "unknown event type (expected view, purchase)",
                "must be > 0", "not a date-time",
            ])
    }

    @Test func rejectKeepsEveryMemberAndUnknownKeys() {
        let line =
            #"{"kind":"record","file":"a.csv","line":9,"event_id":"x","user_id":" 42","product_id":"7","event_type":"View","price":"","event_timestamp":"2024-01-30 10:15:23.123","note":{"k":[1]}}"#
        #expect(
            runValidator([line]) == [
                #"{"kind":"reject","file":"a.csv","line":9,"event_id":"x","user_id":" 42","product_id":"7","event_type":"View","price":"","event_timestamp":"2024-01-30 10:15:23.123","note":{"k":[1]},"reasons":[{"field":"event_id","reason":"not a UUID","value":"x"}]}"#
            ])
    }

    @Test func configurableEventTypes() {
        let rules = ValidationRules(eventTypes: ["view", "purchase", "Add_To_Cart"])
        #expect(reasons(for: ["event_type": "\"add_to_cart\"", "price": "\"\""], rules: rules) == [])
        #expect(
            reasons(for: ["event_type": "\"add_to_cart\"", "price": "\"1.00\""], rules: rules) == [
                RejectReason(field: "price", reason: "must be empty for an add_to_cart", value: "1.00")
            ])
        #expect(
            reasons(for: ["event_type": "\"click\""], rules: rules).first?.reason
                == "unknown event type (expected view, purchase, add_to_cart)")
    }

    @Test func configurableFuture() {
        let rules = ValidationRules(maxFutureMilliseconds: 30_000)
        #expect(
            reasons(for: ["event_timestamp": "\"2024-01-30T12:00:31Z\""], rules: rules).first?.reason
                == "more than 30 seconds in the future")
    }

    @Test func escapedStringsAreDecodedBeforeChecks() {
        #expect(reasons(for: ["event_type": #""\u0076iew""#, "price": "null"]) == [])
    }
}

@Suite struct DuplicateTests {
    let id = "\"6f1c2a3b-1111-4222-8333-444455556666\""

    @Test func secondRowOfAFileIsRejected() {
        let first = recordJSON([:])
        let out = runValidator([first, first])
        #expect(out[0].hasPrefix(#"{"kind":"record""#))
        #expect(
            out[1].contains(
                #""reasons":[{"field":"event_id","reason":"duplicate event_id (earlier in this file)","value":"6f1c2a3b-1111-4222-8333-444455556666"}]"#
            ))
    }

    @Test func sameIDInAnotherFileIsFine() {
        let a = recordJSON([:])
        let b = recordJSON([:], prefix: "\"file\":\"b.csv\",\"line\":2")
        #expect(runValidator([a, b]).allSatisfy { $0.hasPrefix(#"{"kind":"record""#) })
    }

    @Test func forgottenAtTheFilesMarker() {
        let a = recordJSON([:])
        let marker = #"{"kind":"eof","file":"a.csv","rows":1,"bytes":10,"sha256":"00"}"#
        let out = runValidator([a, marker, a])
        #expect(out[2].hasPrefix(#"{"kind":"record""#))
    }

    /// A file abandoned mid-read is read again whole: its ids are not duplicates the second time.
    @Test func abandonForgetsTheFilesIDs() {
        let a = recordJSON([:])
        let abandon = #"{"kind":"abandon","file":"a.csv","reason":"changed while being read"}"#
        let out = runValidator([a, abandon, a, a])
        #expect(out[1] == abandon)
        #expect(out[2].hasPrefix(#"{"kind":"record""#))
        #expect(out[3].contains("duplicate event_id"))
    }

    @Test func rejectedFirstRowDoesNotClaimTheID() {
        let bad = recordJSON(["price": "\"-1\""])
        let good = recordJSON([:])
        let out = runValidator([bad, good, good])
        #expect(out[1].hasPrefix(#"{"kind":"record""#))
        #expect(out[2].contains("duplicate event_id"))
    }

    @Test func duplicateReportedAlongsideOtherReasons() {
        let good = recordJSON([:])
        let out = runValidator([good, recordJSON(["price": "\"-1\""])])
        #expect(out[1].contains("must be > 0") && out[1].contains("duplicate event_id"))
    }

    @Test func recordsWithoutFileUseARecentWindow() {
        let plain = recordJSON([:], prefix: "\"kind\":\"record\"")
        let other = recordJSON(["event_id": "\"00000000-0000-4000-8000-000000000001\""], prefix: "\"kind\":\"record\"")
        let third = recordJSON(["event_id": "\"00000000-0000-4000-8000-000000000002\""], prefix: "\"kind\":\"record\"")
        #expect(runValidator([plain, plain])[1].contains("duplicate event_id (earlier in the stream)"))
        // A window of 2: after two newer ids, the first is forgotten.
        let rules = ValidationRules(recentIDWindow: 2)
        #expect(runValidator([plain, other, third, plain], rules: rules)[3].hasPrefix(#"{"kind":"record""#))
    }

    @Test func perFileCapStopsRemembering() {
        let rules = ValidationRules(maxIDsPerFile: 1)
        let a = recordJSON([:])
        let b = recordJSON(["event_id": "\"00000000-0000-4000-8000-000000000001\""])
        let out = runValidator([a, b, b, a], rules: rules)
        #expect(out[2].hasPrefix(#"{"kind":"record""#))  // beyond the cap: left to the database
        #expect(out[3].contains("duplicate event_id"))  // within the cap: still caught
    }
}

@Suite struct StreamValidatorTests {
    @Test(arguments: [
        #"{"kind":"eof","file":"a.csv","rows":50,"bytes":4321,"sha256":"ab","seen":"2024-01-30T10:15:23.456Z","extra":1}"#,
        #"{"kind":"reject","file":"a.csv","line":3,"raw":"a,b","reasons":[{"field":null,"reason":"expected 6 fields, found 2"}]}"#,
        #"{"kind":"future-kind","x":[1,2,{"y":"\u00e9"}]}"#,
        #"{ "kind" : "eof" , "file":"a.csv","rows":0,"bytes":0,"sha256":"00" }"#,
    ])
    func passesThroughByteIdentical(_ line: String) {
        #expect(runValidator([line]) == [line])
    }

    @Test func blankLinesAreSkipped() {
        #expect(runValidator(["", "  ", "\r", recordJSON([:])]).count == 1)
    }

    @Test(arguments: ["not json", "{\"a\":1", "[1,2]", " x ", "{\"a\":1}x", "{\"a\":\"\u{1}\"}"])
    func malformedLinesBecomeRejects(_ line: String) {
        let out = runValidator([line])
        #expect(out.count == 1)
        #expect(out[0].hasPrefix(#"{"kind":"reject","input_line":1,"raw":"#))
        #expect(out[0].contains("malformed JSON: "))
    }

    @Test func rejectsOnlyDropsValidRecordsAndMarkers() {
        let lines = [recordJSON([:]), recordJSON(["user_id": "\"x\""]), #"{"kind":"eof","file":"a.csv","rows":2,"bytes":1,"sha256":"0"}"#]
        let out = runValidator(lines, rejectsOnly: true)
        #expect(out.count == 1)
        #expect(out[0].contains("not an integer"))
    }

    /// The clock is read once per many records; a record rejected as in the future by an older
    /// reading is judged again by a fresh one, so the verdicts are those of a reading per record.
    /// One validator keeps the day of its last timestamp (its number and text): rows that
    /// change day, back and forth, across midnight by their offset and before 1970, each get
    /// their own date, as one validator per row would write them.
    @Test func timestampsOfChangingDaysEachGetTheirOwnDate() {
        let cases = [
            ("2024-01-30 10:15:23.123", "2024-01-30T10:15:23.123Z"),
            ("2024-01-30T23:59:59.999Z", "2024-01-30T23:59:59.999Z"),
            ("2024-01-29T00:00:00Z", "2024-01-29T00:00:00.000Z"),
            ("2024-01-30T00:15:23+01:00", "2024-01-29T23:15:23.000Z"),
            ("2024-01-30T10:15:23Z", "2024-01-30T10:15:23.000Z"),
            ("2020-02-29T12:00:00Z", "2020-02-29T12:00:00.000Z"),
            ("1969-12-31T23:59:59.999Z", "1969-12-31T23:59:59.999Z"),
            ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000Z"),
            ("1969-12-31T23:59:59.999Z", "1969-12-31T23:59:59.999Z"),
            ("2024-01-30T10:15:23.5Z", "2024-01-30T10:15:23.500Z"),
        ]
        let lines = cases.enumerated().map { n, c in
            recordJSON(["event_id": "\"00000000-0000-4000-8000-\(String(format: "%012d", n))\"", "event_timestamp": "\"\(c.0)\""])
        }
        let together = runValidator(lines)
        #expect(together.count == cases.count)
        for (n, c) in cases.enumerated() {
            #expect(together[n].contains("\"event_timestamp\":\"\(c.1)\""), "\(c.0): \(together[n])")
            #expect(together[n] == runValidator([lines[n]])[0], "\(c.0)")
        }
    }

    @Test func olderClockReadingNeverRejectsARecordInTime() {
        var readings = 0
        // Ten minutes later at every reading after the first.
        let clock = { () -> UTCTimestamp in
            readings += 1
            return UTCTimestamp(millisecondsSinceEpoch: fixedNow.millisecondsSinceEpoch + Int64(readings - 1) * 600_000)
        }
        var stage = StreamValidator(clock: clock)
        var out: [UInt8] = []
        func id(_ n: Int) -> String {
            let digits = String(n)
            return "\"00000000-0000-4000-8000-\(String(repeating: "0", count: 12 - digits.count))\(digits)\""
        }
        let lines = [
            recordJSON(["event_id": id(1)]),
            // Beyond the first reading's limit (12:05), within the second's (12:15).
            recordJSON(["event_id": id(2), "event_timestamp": "\"2024-01-30T12:07:00Z\""]),
            // Beyond the second reading's limit (12:15), within the third's (12:25).
            recordJSON(["event_id": id(3), "event_timestamp": "\"2024-01-30T12:20:00Z\""]),
            // Claimed once by the second record, on its second judging.
            recordJSON(["event_id": id(2)]),
        ]
        for (i, line) in lines.enumerated() {
            var copy = line
            _ = copy.withUTF8 { stage.process(UnsafeRawBufferPointer($0), inputLine: i + 1, into: &out) }
        }
        let written = String(decoding: out, as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(written.count == 4)
        #expect(written[1].hasPrefix(#"{"kind":"record""#) && written[1].contains("2024-01-30T12:07:00.000Z"))
        #expect(written[2].hasPrefix(#"{"kind":"record""#) && written[2].contains("2024-01-30T12:20:00.000Z"))
        #expect(written[3].contains("duplicate event_id (earlier in this file)"))
        #expect(stage.counts.valid == 3)
        #expect(readings == 3)

        // Far in the future even by a fresh reading: rejected, once.
        var far = recordJSON(["event_id": id(4), "event_timestamp": "\"2024-01-30T14:00:00Z\""])
        _ = far.withUTF8 { stage.process(UnsafeRawBufferPointer($0), inputLine: 5, into: &out) }
        let last = String(decoding: out, as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(last.count == 5)
        #expect(last[4].hasPrefix(#"{"kind":"reject""#) && last[4].contains("more than 5 minutes in the future"))
        #expect(readings == 4)

        // Records in time share one reading.
        for n in 10..<110 {
            var line = recordJSON(["event_id": id(n)])
            _ = line.withUTF8 { stage.process(UnsafeRawBufferPointer($0), inputLine: n, into: &out) }
        }
        #expect(stage.counts.valid == 103)
        #expect(readings < 10)
    }

    @Test func countsAndSummary() {
        var stage = StreamValidator(clock: { fixedNow })
        var out: [UInt8] = []
        let lines = [
            recordJSON([:]), recordJSON(["price": "\"0\"", "user_id": "\"0\""]),
            recordJSON(["event_id": "\"00000000-0000-4000-8000-000000000009\"", "price": "\"0\""]),
            "garbage", #"{"kind":"reject","raw":"x","reasons":[{"field":null,"reason":"expected 6 fields, found 1"}]}"#,
        ]
        for (i, line) in lines.enumerated() {
            var copy = line
            _ = copy.withUTF8 { stage.process(UnsafeRawBufferPointer($0), inputLine: i + 1, into: &out) }
        }
        stage.processOverlong(byteCount: 99, limit: 10, inputLine: 6, into: &out)
        #expect(stage.counts.rowsIn == 6)
        #expect(stage.counts.valid == 1)
        #expect(stage.counts.rejected == 5)
        #expect(
            stage.counts.summary == """
                rows in   6
                valid     1
                rejected  5
                      2  price: must be > 0
                      1  event_id: duplicate event_id (earlier in this file)
                      1  expected 6 fields, found 1
                      1  line longer than 10 bytes
                      1  malformed JSON
                      1  user_id: out of range 1…2147483647

                """)
    }
}
