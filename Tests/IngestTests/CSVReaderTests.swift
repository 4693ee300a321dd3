import Foundation
import Generating
import Testing

@testable import Ingest

/// Writes `bytes` to a temp file and reads every row, feeding the reader `chunkSize` bytes at a time.
func readCSV(_ bytes: [UInt8], chunkSize: Int = 1 << 16, maxRowBytes: Int = 32 << 20) throws -> [(
    line: Int, fields: [String], problem: String?, raw: String
)] {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("csv-\(UUID().uuidString).csv").path
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    defer { try? FileManager.default.removeItem(atPath: path) }
    let fd = open(path, O_RDONLY)
    defer { close(fd) }
    let reader = CSVReader(fd: fd, chunkSize: chunkSize, maxRowBytes: maxRowBytes)
    var rows: [(Int, [String], String?, String)] = []
    while let row = try reader.nextRow() {
        let fields = (0..<row.fieldCount).map { reader.fieldString($0) }
        rows.append((row.line, fields, row.problem?.description, String(decoding: reader.rawRow, as: UTF8.self)))
    }
    return rows
}

@Suite struct CSVReaderTests {
    @Test(arguments: [1, 2, 3, 7, 64, 1 << 16])
    func quotedCommasQuotesAndNewlinesAtEveryChunkSize(_ chunkSize: Int) throws {
        let text = "a,b,c\r\n\"x,1\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n3,,\"\"\n"
        let rows = try readCSV(Array(text.utf8), chunkSize: chunkSize)
        #expect(rows.map(\.fields) == [["a", "b", "c"], ["x,1", "say \"hi\"", "two\nlines"], ["3", "", ""]])
        #expect(rows.map(\.line) == [1, 2, 4])
        #expect(rows.allSatisfy { $0.problem == nil })
    }

    @Test func byteOrderMarkIsSkippedAndLastLineNeedsNoNewline() throws {
        let rows = try readCSV([0xEF, 0xBB, 0xBF] + Array("event_id,user_id\r\n1,2".utf8), chunkSize: 2)
        #expect(rows.map(\.fields) == [["event_id", "user_id"], ["1", "2"]])
    }

    @Test func blankLinesAreSkippedAndLinesStillCounted() throws {
        let rows = try readCSV(Array("h\n\n\r\n1\n\n2\n".utf8))
        #expect(rows.map(\.fields) == [["h"], ["1"], ["2"]])
        #expect(rows.map(\.line) == [1, 4, 6])
    }

    @Test func unterminatedQuoteIsRejectedWithTheLineItOpened() throws {
        let rows = try readCSV(Array("h1,h2\n1,\"open\n2,3\n".utf8))
        #expect(rows.count == 2)
        #expect(rows[1].problem == "unterminated quoted field (opened on line 2)")
    }

    @Test func invalidUTF8NamesTheField() throws {
        let rows = try readCSV(Array("a,b\n".utf8) + Array("ok,".utf8) + [0xFF, 0xFE] + [0x0A])
        #expect(rows[1].problem == "field 2: invalid UTF-8")
    }

    @Test func nulByteNamesTheField() throws {
        let rows = try readCSV(Array("a,b\nx\0y,z\n".utf8))
        #expect(rows[1].problem == "field 1: NUL byte")
    }

    @Test func problemsCarryTheirColumnAsAValue() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("csv-\(UUID().uuidString).csv").path
        _ = FileManager.default.createFile(atPath: path, contents: Data(Array("a,b,c\nx,y\0,z\n".utf8)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        let reader = CSVReader(fd: fd)
        _ = try reader.nextRow()
        let problem = try #require(try reader.nextRow()?.problem)
        #expect(problem.kind == .nulByte)
        #expect(problem.column == 1)
        // The offending value travels with the reason (issue 15: faithful dead letters).
        #expect(problem.value == "y\0")
        #expect(problem.rejectReason(columnNames: ["a", "b", "c"]) == RejectReason(field: "b", reason: "NUL byte", value: "y\0"))
        #expect(problem.rejectReason(columnNames: ["a", "", "c"]) == RejectReason(field: nil, reason: "field 2: NUL byte", value: "y\0"))
    }

    @Test func textAfterClosingQuoteIsAProblem() throws {
        let rows = try readCSV(Array("a,b\n\"x\"y,z\n".utf8))
        #expect(rows[1].problem == "field 1: text after closing quote")
    }

    @Test func overlongRowIsRejectedAndReadingContinues() throws {
        let big = String(repeating: "x", count: 5000)
        let rows = try readCSV(Array("a,b\n\(big),1\n2,3\n".utf8), chunkSize: 100, maxRowBytes: 1000)
        #expect(rows.count == 3)
        #expect(rows[1].problem?.hasPrefix("row longer than") == true)
        #expect(rows[2].fields == ["2", "3"])
    }

    @Test func rawRowKeepsTheTextAsInTheFile() throws {
        let rows = try readCSV(Array("a,b\r\n\"q,1\",2\r\n".utf8))
        #expect(rows[1].raw == "\"q,1\",2")
    }

    /// Random CSV built from random fields reads back as the same fields, at any chunk size.
    @Test func randomRoundTrip() throws {
        var rng = SplitMix(seed: 7)
        let pieces = ["a", "é", ",", "\"", "\n", "\r\n", " ", "12", "😀", ""]
        for _ in 0..<200 {
            var expected: [[String]] = []
            var text = ""
            let columns = Int(rng.next() % 4) + 1
            for _ in 0..<Int(rng.next() % 5 + 1) {
                var row: [String] = []
                for _ in 0..<columns {
                    var field = ""
                    for _ in 0..<Int(rng.next() % 4) { field += pieces[Int(rng.next() % UInt64(pieces.count))] }
                    row.append(field)
                }
                // A row of one empty field would be a blank line: give it content.
                if columns == 1 && row[0].isEmpty { row[0] = "z" }
                expected.append(row)
                text += row.map { "\"" + $0.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }.joined(separator: ",")
                text += rng.next() % 2 == 0 ? "\n" : "\r\n"
            }
            let chunk = Int(rng.next() % 9) + 1
            let rows = try readCSV(Array(text.utf8), chunkSize: chunk)
            #expect(rows.map(\.fields) == expected, "chunk \(chunk): \(text.debugDescription)")
        }
    }

    @Test func hashAndSizeCoverTheWholeFile() throws {
        let bytes = Array("a,b\n1,2\n".utf8)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("h-\(UUID().uuidString).csv").path
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        let reader = CSVReader(fd: fd, chunkSize: 3)
        while try reader.nextRow() != nil {}
        #expect(reader.byteCount == 8)
        // sha256("a,b\n1,2\n")
        #expect(reader.sha256Hex() == "492d5ea496056f1a6a6592241032fab764c321596317930b4fa0e1e8bc3b7470")
    }
}

@Suite struct CSVFileEmitterNamingTests {
    /// The reader knows positions; the emitter names the column from the header.
    @Test func readerProblemsNameTheHeaderColumn() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("n-\(UUID().uuidString).csv").path
        let text = EventField.csvHeader + "\n6f1c2a3b-1111-4222-8333-444455556666,1,2,vi\0ew,,2024-01-30T10:15:23Z\n"
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let output = ByteOutput(fd: -1, flushThreshold: 1 << 30)
        let emitted = try CSVFileEmitter().emit(path: path, name: "n.csv", seen: nil, into: output)
        #expect(emitted.rejects == 1)
        let firstLine = String(decoding: output.bytes, as: UTF8.self).split(separator: "\n")[0]
        let reasons = try withLine(String(firstLine)) { $0.reasons() }
        #expect(reasons == [RejectReason(field: "event_type", reason: "NUL byte", value: "vi\u{0}ew")])
    }
}
