import Foundation
import Generating
import Testing

@testable import Ingest

/// The bytes `watch` and `validate FILE.csv` write for CSV rows, pinned exactly: the record
/// writer reserves a line's worst case and escapes 8 bytes at a time, so its output is checked
/// against fixed text and against a byte-at-a-time reference escaper.
@Suite struct LineEncodingTests {
    /// The escaper as specified: `"`, `\` and bytes below 0x20 escaped, all else as it is.
    static func referenceString(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x22]
        for b in bytes {
            switch b {
            case 0x22: out += Array(#"\""#.utf8)
            case 0x5C: out += Array(#"\\"#.utf8)
            case 0x0A: out += Array(#"\n"#.utf8)
            case 0x0D: out += Array(#"\r"#.utf8)
            case 0x09: out += Array(#"\t"#.utf8)
            case 0x08: out += Array(#"\b"#.utf8)
            case 0x0C: out += Array(#"\f"#.utf8)
            case 0..<0x20: out += Array(String(format: "\\u%04x", Int(b)).utf8)
            default: out.append(b)
            }
        }
        out.append(0x22)
        return out
    }

    @Test func stringsMatchTheReferenceEscaperAtEveryLengthAndPosition() {
        let specials: [UInt8] = [0x22, 0x5C, 0x00, 0x01, 0x08, 0x09, 0x0A, 0x0C, 0x0D, 0x1F, 0x20, 0x7F, 0x80, 0xC3, 0xFF]
        for length in 0...40 {
            let plain = (0..<length).map { UInt8(ascii: "a") + UInt8($0 % 26) }
            for position in 0..<max(length, 1) {
                for special in specials where length > 0 {
                    var bytes = plain
                    bytes[position] = special
                    var out: [UInt8] = Array("prefix".utf8)
                    bytes.withUnsafeBytes { JSONWriter.appendString($0, &out) }
                    #expect(out == Array("prefix".utf8) + Self.referenceString(bytes), "length \(length), \(special) at \(position)")
                }
            }
            var out: [UInt8] = []
            plain.withUnsafeBytes { JSONWriter.appendString($0, &out) }
            #expect(out == Self.referenceString(plain))
        }
    }

    @Test(arguments: [1, 7, 4095, 4096, 4097, 20000])
    func longAndRandomStringsMatchTheReference(_ length: Int) {
        var generator = SplitMix(seed: UInt64(length))
        let alphabet: [UInt8] = [0x22, 0x5C, 0x00, 0x0A, 0x1F, 0x7F, 0xC3, 0xA9, 0x61, 0x62, 0x20, 0x2C]
        let bytes = (0..<length).map { _ in
            generator.next() % 4 == 0 ? alphabet[Int(generator.next() % UInt64(alphabet.count))] : UInt8(ascii: "x")
        }
        var out: [UInt8] = []
        bytes.withUnsafeBytes { JSONWriter.appendString($0, &out) }
        #expect(out == Self.referenceString(bytes))
    }

    @Test func recordBytesArePinnedForTrickyValues() {
        let values: [[UInt8]] = [
            Array(#"a"b\c"#.utf8),  // quote and backslash
            [0x00, 0x01, 0x08, 0x09, 0x0A, 0x0C, 0x0D, 0x1F, 0x20, 0x7F],  // NUL and control characters, DEL as it is
            Array("é😀ü".utf8),  // non-ASCII as it is
            [],
            Array("12.50".utf8),
            Array("2024-01-30T10:15:23.456Z".utf8),
        ]
        let expected =
            #"{"kind":"record","file":"q\"f.csv","line":17,"event_id":"a\"b\\c","#
            + #""user_id":"\u0000\u0001\b\t\n\f\r\u001f "# + "\u{7F}" + #"","product_id":"é😀ü","event_type":"","#
            + #""price":"12.50","event_timestamp":"2024-01-30T10:15:23.456Z"}"# + "\n"
        withSpans(values) { spans in
            let fields = Array(zip(EventField.allCases, spans))
            var reserved: [UInt8] = []
            LineEncoder.appendRecord(file: #"q"f.csv"#, line: 17, fields: fields, into: &reserved)
            #expect(String(decoding: reserved, as: UTF8.self) == expected)
            var byKeys: [UInt8] = []
            LineEncoder.appendRecordByKeys(file: #"q"f.csv"#, line: 17, fields: fields, into: &byKeys)
            #expect(byKeys == reserved)
        }
        // The emitter's form: fields back to back, in file order, mapped to event fields.
        let order = [3, 0, 5, 1, 4, 2]  // column of each event field
        var fieldBytes: [UInt8] = []
        var fieldEnds: [Int] = []
        for column in 0..<6 {
            fieldBytes += values[order.firstIndex(of: column)!]
            fieldEnds.append(fieldBytes.count)
        }
        let columns = EventField.allCases.map { ($0, order[$0.rawValue]) }
        var out: [UInt8] = []
        Array(#"q"f.csv"#.utf8).withUnsafeBytes { file in
            fieldBytes.withUnsafeBytes { bytes in
                fieldEnds.withUnsafeBufferPointer { ends in
                    columns.withUnsafeBufferPointer { columns in
                        LineEncoder.appendRecord(file: file, line: 17, columns: columns, fieldBytes: bytes, fieldEnds: ends, into: &out)
                    }
                }
            }
        }
        #expect(String(decoding: out, as: UTF8.self) == expected)
    }

    @Test func recordTooLongForOneReservationIsWrittenKeyByKey() {
        let long = [UInt8](repeating: UInt8(ascii: "\""), count: 20_000)  // 6-byte worst case: over 64 KiB
        let short = Array("x".utf8)
        withSpans([long, short, short, short, short, short]) { spans in
            var out: [UInt8] = []
            LineEncoder.appendRecord(file: nil, line: nil, fields: Array(zip(EventField.allCases, spans)), into: &out)
            let text = String(decoding: out, as: UTF8.self)
            #expect(text.hasPrefix(#"{"kind":"record","event_id":"\"\""#))
            #expect(text.hasSuffix(#"\"","user_id":"x","product_id":"x","event_type":"x","price":"x","event_timestamp":"x"}"# + "\n"))
            #expect(out.count == 40_114)
        }
    }

    /// What the emitter writes for a file with every kind of awkward row, byte for byte.
    @Test func emitterOutputIsPinnedForTrickyRows() throws {
        var csv: [UInt8] = Array("price,event_type,extra,event_id,user_id,product_id,event_timestamp\r\n".utf8)
        csv += Array(#""1.5","a""b\c",zz,x"#.utf8) + [0x09] + Array(#"y,"l1"#.utf8) + [0x0A] + Array(#"l2",é😀,""#.utf8)
        csv += [0x01, 0x1F, 0x7F, 0x0D] + Array("q\"\r\n".utf8)
        csv += Array("1,a".utf8) + [0x00] + Array("b,c,d,e,f,g\n".utf8)
        csv += Array("1,".utf8) + [0xFF, 0xFE] + Array("ab,c,d,e,f,g\n".utf8)
        csv += Array("1,2,3\n".utf8)
        let lines = try emitLines(csv, name: "t.csv")
        let expected = [
            #"{"kind":"record","file":"t.csv","line":2,"event_id":"x\ty","user_id":"l1\nl2","product_id":"é😀","#
                + #""event_type":"a\"b\\c","price":"1.5","event_timestamp":"\u0001\u001f"# + "\u{7F}" + #"\rq"}"#,
            #"{"kind":"reject","file":"t.csv","line":4,"raw":"1,a\u0000b,c,d,e,f,g","#
                + #""reasons":[{"field":"event_type","reason":"NUL byte","value":"a\u0000b"}]}"#,
            #"{"kind":"reject","file":"t.csv","line":5,"raw":"1,\#u{FFFD}\#u{FFFD}ab,c,d,e,f,g","raw_base64":"MSz//mFiLGMsZCxlLGYsZw==","#
                + #""reasons":[{"field":"event_type","reason":"invalid UTF-8","value":"\#u{FFFD}\#u{FFFD}ab"}]}"#,
            #"{"kind":"reject","file":"t.csv","line":6,"raw":"1,2,3","reasons":[{"field":null,"reason":"expected 7 fields, found 3"}]}"#,
        ]
        #expect(Array(lines.dropLast()) == expected)
        #expect(lines.last?.hasPrefix(#"{"kind":"eof","file":"t.csv","rows":4,"bytes":\#(csv.count),"sha256":""#) == true)
    }
}

/// The emitter's lines for `csv` written as file `name`.
private func emitLines(_ csv: [UInt8], name: String) throws -> [String] {
    let path = try temporaryFile(csv)
    defer { unlink(path) }
    return try emitLines(path: path, name: name)
}

private func emitLines(path: String, name: String) throws -> [String] {
    var bytes: [UInt8] = []
    let output = ByteOutput { bytes += $0 }
    _ = try CSVFileEmitter().emit(path: path, name: name, seen: nil, into: output)
    try output.flush()
    return lines(bytes)
}

private func lines(_ bytes: [UInt8]) -> [String] {
    bytes.split(separator: 0x0A).map { String(decoding: $0, as: UTF8.self) }
}

private func temporaryFile(_ bytes: [UInt8]) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("enc-\(UUID().uuidString).csv").path
    #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
    return path
}

/// Calls `body` with a span over each buffer.
private func withSpans<R>(_ buffers: [[UInt8]], _ body: ([UnsafeRawBufferPointer]) -> R) -> R {
    let copies = buffers.map { bytes -> UnsafeMutableRawBufferPointer in
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
        copy.copyBytes(from: bytes)
        return copy
    }
    defer { for copy in copies { copy.deallocate() } }
    return body(zip(copies, buffers).map { UnsafeRawBufferPointer(rebasing: $0.0[0..<$0.1.count]) })
}
