import Testing

@testable import Ingest

private func parse(_ text: String) -> TimestampParse {
    var copy = text
    return copy.withUTF8 { UTCTimestamp.parse(UnsafeRawBufferPointer($0)) }
}

private func normalised(_ text: String) -> String? {
    guard case .instant(let t) = parse(text) else { return nil }
    return t.rfc3339
}

@Suite struct TimestampParsingTests {
    @Test(arguments: [
        ("2024-01-30 10:15:23.123", "2024-01-30T10:15:23.123Z"),
        ("2024-01-30T10:15:23.123Z", "2024-01-30T10:15:23.123Z"),
        ("2024-01-30t10:15:23z", "2024-01-30T10:15:23.000Z"),
        ("2024-01-30T10:15:23", "2024-01-30T10:15:23.000Z"),
        ("2024-01-30T10:15:23.1", "2024-01-30T10:15:23.100Z"),
        ("2024-01-30T10:15:23.12", "2024-01-30T10:15:23.120Z"),
        ("2024-01-30T10:15:23.123999999Z", "2024-01-30T10:15:23.123Z"),  // truncated, not rounded
        ("2024-01-30T10:15:23.9999Z", "2024-01-30T10:15:23.999Z"),
        ("2024-01-30T10:15:23+05:45", "2024-01-30T04:30:23.000Z"),
        ("2024-01-30T10:15:23-00:30", "2024-01-30T10:45:23.000Z"),
        ("2024-01-30T10:15:23+0545", "2024-01-30T04:30:23.000Z"),
        ("2024-01-30T00:15:23+01:00", "2024-01-29T23:15:23.000Z"),
        ("2024-01-30T10:15:23-00:00", "2024-01-30T10:15:23.000Z"),
        ("2024-12-31T23:30:00-01:00", "2025-01-01T00:30:00.000Z"),
        ("2024-02-29T12:00:00Z", "2024-02-29T12:00:00.000Z"),
        ("2000-02-29T12:00:00Z", "2000-02-29T12:00:00.000Z"),
        ("1969-12-31T23:59:59.999Z", "1969-12-31T23:59:59.999Z"),
        ("1900-01-01 00:00:00", "1900-01-01T00:00:00.000Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
        ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
        ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999Z"),  // leap second
        ("2017-01-01T05:44:60+05:45", "2016-12-31T23:59:59.999Z"),
    ])
    func accepts(_ input: String, _ expected: String) {
        #expect(normalised(input) == expected)
    }

    @Test(arguments: [
        ("", TimestampParse.notDateTime),
        ("2024-01-30", .notDateTime),
        ("2024-01-30 10:15", .notDateTime),
        ("2024-01-30T10:15:23.", .notDateTime),
        ("2024-01-30T10:15:23.123Zjunk", .notDateTime),
        ("2024-01-30T10:15:23+05", .notDateTime),
        ("2024-01-30T10:15:23+5:45", .notDateTime),
        ("2024-01-30T10:15:23+24:00", .notDateTime),
        ("2024-01-30T10:15:23 +05:45", .notDateTime),
        ("2024/01/30 10:15:23", .notDateTime),
        ("2024-01-30X10:15:23", .notDateTime),
        ("2024-1-30 10:15:23", .notDateTime),
        ("24-01-30T10:15:23Z", .notDateTime),
        ("+2024-01-30T10:15:23Z", .notDateTime),
        ("2024-01-30T24:00:00Z", .notDateTime),
        ("2024-01-30T10:60:00Z", .notDateTime),
        ("2024-01-30T10:15:61Z", .notDateTime),
        ("1706609723", .notDateTime),
        ("yesterday", .notDateTime),
        ("2024-02-30T10:15:23Z", .noSuchDate),
        ("2023-02-29T10:15:23Z", .noSuchDate),
        ("1900-02-29T10:15:23Z", .noSuchDate),
        ("2024-04-31T10:15:23Z", .noSuchDate),
        ("2024-13-01T10:15:23Z", .noSuchDate),
        ("2024-00-10T10:15:23Z", .noSuchDate),
        ("2024-01-00T10:15:23Z", .noSuchDate),
        ("2024-01-30T10:15:60Z", .misplacedLeapSecond),
        ("2016-12-31T23:59:60+01:00", .misplacedLeapSecond),
        ("0000-12-31T10:15:23Z", .yearOutOfRange),
        ("0001-01-01T00:30:00+01:00", .yearOutOfRange),
        ("9999-12-31T23:30:00-01:00", .yearOutOfRange),
    ])
    func rejects(_ input: String, _ expected: TimestampParse) {
        #expect(parse(input) == expected)
    }

    @Test func agreesWithDayArithmeticAcrossFourCenturies() {
        // Every day from 1600 to 2400 at noon: parse(format(t)) == t.
        var day = UTCTimestamp.daysFromCivil(year: 1600, month: 1, day: 1)
        let end = UTCTimestamp.daysFromCivil(year: 2400, month: 12, day: 31)
        while day <= end {
            let t = UTCTimestamp(millisecondsSinceEpoch: Int64(day) * 86_400_000 + 43_200_123)
            #expect(UTCTimestamp(parsing: t.rfc3339) == t)
            day += 1
        }
    }
}
