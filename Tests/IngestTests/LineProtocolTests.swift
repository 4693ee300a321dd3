import Foundation
import Testing

@testable import Ingest

/// Decodes one line and hands the borrowed view to `body`.
func withLine<R>(_ text: String, _ body: (ProtocolLine) throws -> R) throws -> R {
    let bytes = Array(text.utf8)
    return try bytes.withUnsafeBytes { raw in
        var decoder = LineDecoder()
        return try body(try decoder.decode(raw))
    }
}

func jsonObject(_ bytes: [UInt8]) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
}

@Suite struct LineProtocolTests {
    @Test func kindDefaultsToRecordAndKnowsTheThreeKinds() throws {
        #expect(try withLine(#"{"event_id":"x"}"#) { $0.kind } == .record)
        #expect(try withLine(#"{"kind":"record"}"#) { $0.kind } == .record)
        #expect(try withLine(#"{"kind":"reject"}"#) { $0.kind } == .reject)
        #expect(try withLine(#"{"kind":"eof"}"#) { $0.kind } == .endOfFile)
        #expect(try withLine(#"{"kind":"heartbeat"}"#) { $0.kind } == .other("heartbeat"))
    }

    /// "record" and "reject" are told by one word compare; escaped spellings and other words of
    /// that length still take the general path.
    @Test func kindWordCompareKeepsEscapesAndNearMisses() throws {
        #expect(try withLine(#"{"kind":"rec\u006frd"}"#) { $0.kind } == .record)
        #expect(try withLine(#"{"kind":"rej\u0065ct"}"#) { $0.kind } == .reject)
        #expect(try withLine(#"{"kind":"recorD"}"#) { $0.kind } == .other("recorD"))
        #expect(try withLine(#"{"kind":"rejecT"}"#) { $0.kind } == .other("rejecT"))
        #expect(try withLine(#"{"kind":"rejects"}"#) { $0.kind } == .other("rejects"))
        #expect(try withLine(#"{"line":1,"kind":"reject","file":"a.csv"}"#) { $0.kind } == .reject)
    }

    @Test func knownKeysAreFoundAndEscapedValuesDecoded() throws {
        try withLine(#"{"file":"a\"b.csv","line":7,"extra":1,"user_id":" 42","price":null}"#) { line in
            #expect(line.file == "a\"b.csv")
            #expect(line.lineNumber == 7)
            #expect(line.string(.userID) == " 42")
            #expect(line.member(.price)?.kind == .null)
            #expect(line.member(.eventID) == nil)
        }
    }

    @Test func escapedKeyIsStillRecognised() throws {
        try withLine(#"{"f\u0069le":"x.csv"}"#) { line in
            #expect(line.file == "x.csv")
        }
    }

    @Test func recordRoundTripsThroughFoundation() throws {
        var out: [UInt8] = []
        let values = ["6f1c1d32-0000-4000-8000-000000000001", "42", "7", "purchase", "12.50", "2024-01-30 10:15:23.123"]
        let storage = Array(values.joined().utf8)
        storage.withUnsafeBytes { all in
            var fields: [(EventField, UnsafeRawBufferPointer)] = []
            var start = 0
            for (i, field) in EventField.allCases.enumerated() {
                let count = values[i].utf8.count
                fields.append((field, UnsafeRawBufferPointer(rebasing: all[start..<(start + count)])))
                start += count
            }
            LineEncoder.appendRecord(file: "b \"1\".csv", line: 3, fields: fields, into: &out)
        }
        #expect(out.last == 0x0A)
        let object = try jsonObject(Array(out.dropLast()))
        #expect(object["kind"] as? String == "record")
        #expect(object["file"] as? String == "b \"1\".csv")
        #expect(object["line"] as? Int == 3)
        for (i, field) in EventField.allCases.enumerated() {
            #expect(object[field.name] as? String == values[i])
        }
    }

    @Test func rejectKeepsEveryMemberAndAppendsReasons() throws {
        var out: [UInt8] = []
        let input =
            #"{"kind":"record","file":"f.csv","line":2,"custom":{"a":[1]},"price":"-1","reasons":[{"field":null,"reason":"earlier"}]}"#
        try withLine(input) { line in
            LineEncoder.appendReject(
                from: line, reasons: [RejectReason(.price, "must be > 0", value: "-1")], into: &out)
        }
        let object = try jsonObject(Array(out.dropLast()))
        #expect(object["kind"] as? String == "reject")
        #expect((object["custom"] as? [String: Any])?["a"] as? [Int] == [1])
        #expect(object["price"] as? String == "-1")
        let reasons = try #require(object["reasons"] as? [[String: Any]])
        #expect(reasons.count == 2)
        #expect(reasons[1]["field"] as? String == "price")
        #expect(reasons[1]["value"] as? String == "-1")
        try withLine(String(decoding: out.dropLast(), as: UTF8.self)) { line in
            #expect(line.reasons().map(\.description) == ["earlier", #"price: must be > 0 (got "-1")"#])
        }
    }

    @Test func malformedLineBecomesRejectWithRepairedText() throws {
        var out: [UInt8] = []
        let raw: [UInt8] = Array("{not json \"".utf8) + [0xFF]
        raw.withUnsafeBytes { LineEncoder.appendMalformedLine($0, lineNumber: 9, problem: "expected a key string at byte 2", into: &out) }
        let object = try jsonObject(Array(out.dropLast()))
        #expect(object["kind"] as? String == "reject")
        #expect(object["input_line"] as? Int == 9)
        #expect(object["raw"] as? String == "{not json \"\u{FFFD}")
        let reasons = try #require(object["reasons"] as? [[String: Any]])
        #expect(reasons[0]["reason"] as? String == "malformed JSON: expected a key string at byte 2")
        #expect(reasons[0]["field"] is NSNull)
    }

    @Test func markerRoundTrips() throws {
        var out: [UInt8] = []
        let fingerprint = FileFingerprint(
            name: "b.csv", bytes: 4321, sha256: String(repeating: "a", count: 64), inode: 1_234_567,
            modifiedNanoseconds: 1_706_609_723_456_789_012)
        let marker = FileMarker(fingerprint: fingerprint, rows: 50, seen: UTCTimestamp(parsing: "2024-01-30T10:15:23.456Z"))
        LineEncoder.appendMarker(marker, into: &out)
        let text = String(decoding: out.dropLast(), as: UTF8.self)
        #expect(text.hasSuffix(#""seen":"2024-01-30T10:15:23.456Z","inode":1234567,"mtime_ns":1706609723456789012}"#))
        let decoded = try withLine(text) { line in (line.kind, FileMarker(line)) }
        #expect(decoded.0 == .endOfFile)
        #expect(decoded.1 == marker)
        #expect(decoded.1?.fingerprint.inode == 1_234_567)
        #expect(decoded.1?.fingerprint.modifiedNanoseconds == 1_706_609_723_456_789_012)
    }

    /// Markers written before `inode` and `mtime_ns` existed still close their file.
    @Test func markerWithoutVersionKeysIsAccepted() throws {
        let line =
            #"{"kind":"eof","file":"a.csv","rows":2,"bytes":10,"sha256":"\#(String(repeating: "b", count: 64))","seen":"2024-01-30T10:15:23.456Z"}"#
        let marker = try #require(try withLine(line) { FileMarker($0) })
        #expect(marker.file == "a.csv" && marker.bytes == 10 && marker.rows == 2)
        #expect(marker.fingerprint.inode == nil && marker.fingerprint.modifiedNanoseconds == nil)
        #expect(marker.seen?.millisecondsSinceEpoch == UTCTimestamp(parsing: "2024-01-30T10:15:23.456Z")?.millisecondsSinceEpoch)
    }

    @Test func stringsAreEscapedForJSON() throws {
        var out: [UInt8] = []
        JSONWriter.appendString("q\"b\\n\n\t\u{01}é", &out)
        #expect(String(decoding: out, as: UTF8.self) == #""q\"b\\n\n\t\u0001é""#)
        out.removeAll()
        for v in [0, 7, -7, 1_234_567_890, Int.min + 1, Int.max] { JSONWriter.appendInt(v, &out); out.append(0x20) }
        #expect(String(decoding: out, as: UTF8.self) == "0 7 -7 1234567890 \(Int.min + 1) \(Int.max) ")
    }

    @Test func timestampsFormatAsRFC3339Milliseconds() {
        #expect(UTCTimestamp(millisecondsSinceEpoch: 0).rfc3339 == "1970-01-01T00:00:00.000Z")
        #expect(UTCTimestamp(millisecondsSinceEpoch: 1_706_609_723_123).rfc3339 == "2024-01-30T10:15:23.123Z")
        #expect(UTCTimestamp(millisecondsSinceEpoch: -1).rfc3339 == "1969-12-31T23:59:59.999Z")
        #expect(UTCTimestamp(millisecondsSinceEpoch: 253_402_300_799_999).rfc3339 == "9999-12-31T23:59:59.999Z")
        for days in stride(from: -800_000, to: 3_000_000, by: 9_973) {
            let (y, m, d) = UTCTimestamp.civilFromDays(days)
            #expect(UTCTimestamp.daysFromCivil(year: y, month: m, day: d) == days)
        }
    }

    @Test func lineReaderSplitsLinesAndReportsOverlongOnes() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let text = "one\n\ntwo\r\n" + String(repeating: "x", count: 300) + "\nlast"
        _ = Array(text.utf8).withUnsafeBytes { write(fds[1], $0.baseAddress, $0.count) }
        close(fds[1])
        defer { close(fds[0]) }
        let reader = LineReader(fd: fds[0], bufferSize: 16, maxLineLength: 100)
        var items: [String] = []
        while let item = try reader.next() {
            switch item {
            case .line(let raw): items.append(String(decoding: raw, as: UTF8.self))
            case .overlong(let count): items.append("overlong \(count)")
            }
        }
        #expect(items == ["one", "", "two\r", "overlong 300", "last"])
        #expect(reader.lineNumber == 5)
    }

    /// A line just over the limit whose end arrives with it (the buffer grew past the limit
    /// first) is overlong too; one of exactly the limit is a line.
    @Test func aLineJustOverTheLimitIsOverlongEvenWhenItsEndIsBuffered() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let text =
            String(repeating: "x", count: 110) + "\n" + String(repeating: "y", count: 100) + "\n" + String(repeating: "z", count: 101)
        _ = Array(text.utf8).withUnsafeBytes { write(fds[1], $0.baseAddress, $0.count) }
        close(fds[1])
        defer { close(fds[0]) }
        let reader = LineReader(fd: fds[0], bufferSize: 16, maxLineLength: 100)
        var items: [String] = []
        while let item = try reader.next() {
            switch item {
            case .line(let raw): items.append("line \(raw.count)")
            case .overlong(let count): items.append("overlong \(count)")
            }
        }
        #expect(items == ["overlong 110", "line 100", "overlong 101"])
    }
}
