import Foundation
import Testing

@testable import Ingest
@testable import Watching

/// The emitter as `watch` uses it, on files written the way real exports are.
@Suite struct WatchEmitterTests {
    private func emit(_ bytes: [UInt8]) throws -> (lines: [String], result: EmittedFile) {
        let folder = NSTemporaryDirectory() + "watch-emit-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/f.csv"
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        let out = folder + "/out"
        let fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let output = ByteOutput(fd: fd)
        let result = try CSVFileEmitter().emit(
            path: path, name: "f.csv", seen: UTCTimestamp(parsing: "2024-01-30T10:15:23.456Z"), into: output)
        try output.flush()
        close(fd)
        let text = try String(contentsOfFile: out, encoding: .utf8)
        return (text.split(separator: "\n").map(String.init), result)
    }

    @Test func crlfBomAndQuotedNewlines() throws {
        let csv =
            "\u{FEFF}event_id,user_id,product_id,event_type,price,event_timestamp\r\n"
            + "e1,1,2,view,,2024-01-30 10:15:23.123\r\n"
            + "\"e2\",\"1\",\"2\",\"note\r\nwith, comma and \"\"quote\"\"\",\"9.99\",2024-01-30 10:15:24.000\r\n"
            + "e3,1,2,purchase,1.00,2024-01-30 10:15:25.000"  // no final newline
        let (lines, result) = try emit(Array(csv.utf8))
        #expect(lines.count == 4)
        #expect(result.records == 3)
        #expect(result.rejects == 0)
        #expect(lines[0].hasPrefix(#"{"kind":"record","file":"f.csv","line":2,"event_id":"e1","user_id":"1""#))
        #expect(lines[0].hasSuffix(#""event_timestamp":"2024-01-30 10:15:23.123"}"#))  // no CR kept
        #expect(lines[1].contains(#""line":3,"#))
        #expect(lines[1].contains(#""event_type":"note\r\nwith, comma and \"quote\"""#))
        #expect(lines[2].contains(#""line":5,"#))  // the quoted newline made row 3 span two lines
        #expect(lines[3].hasPrefix(#"{"kind":"eof","file":"f.csv","rows":3,"bytes":\#(csv.utf8.count),"#))
        #expect(lines[3].contains(#""seen":"2024-01-30T10:15:23.456Z","inode":"#))
        // The marker names the version read.
        let version = try #require(result.version)
        #expect(result.marker.fingerprint.isVersion(version))
        #expect(lines[3].hasSuffix(#""mtime_ns":\#(version.modifiedNanoseconds)}"#))
        #expect(!result.changedWhileReading)
    }

    @Test func utf16FileIsOneRejectAndAProblem() throws {
        var bytes: [UInt8] = [0xFF, 0xFE]
        for unit in "event_id,user_id\n1,2\n".utf16 { bytes += [UInt8(unit & 0xFF), UInt8(unit >> 8)] }
        let (lines, result) = try emit(bytes)
        #expect(result.fileProblem == "file is UTF-16, not UTF-8")
        #expect(lines.count == 2)
        #expect(lines[0].hasPrefix(#"{"kind":"reject""#))
        #expect(lines[1].hasPrefix(#"{"kind":"eof""#))
    }
}
