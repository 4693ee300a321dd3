import Testing
import Validating

@testable import Generating
@testable import Ingest

#if canImport(Glibc)
import Glibc
#endif

/// Runs generated rows through the same path as `validate FILE.csv`: CSV file → emitter → validator.
private func validateCSV(_ rows: [GeneratedRow], now: UTCTimestamp) throws -> [String] {
    let dir = "/tmp/gen-tests-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
    var writer = try BatchWriter(folder: dir)
    let name = try writer.write(BatchEncoding.csv(rows), time: now)
    defer {
        unlink("\(dir)/\(name)")
        rmdir(dir)
    }
    let spoolPath = "\(dir)/spool"
    let spool = open(spoolPath, O_RDWR | O_CREAT | O_TRUNC, 0o600)
    defer {
        close(spool)
        unlink(spoolPath)
    }
    let lines = ByteOutput(fd: spool)
    _ = try CSVFileEmitter().emit(path: "\(dir)/\(name)", name: name, seen: nil, into: lines)
    var stage = StreamValidator(clock: { now })
    var out: [UInt8] = []
    var number = 0
    for line in lines.bytes.split(separator: 0x0A) {
        number += 1
        Array(line).withUnsafeBytes { _ = stage.process($0, inputLine: number, into: &out) }
    }
    return String(decoding: out, as: UTF8.self).split(separator: "\n").map(String.init)
}

private func decodedReasons(_ line: String) -> [RejectReason] {
    var bytes = Array(line.utf8)
    return bytes.withUnsafeMutableBytes { raw in
        var decoder = LineDecoder()
        return (try? decoder.decode(UnsafeRawBufferPointer(raw)))?.reasons() ?? []
    }
}

@Suite struct GeneratorTests {
    let now = UTCTimestamp(parsing: "2024-01-30T10:15:23.123Z")!

    @Test func sameSeedSameRows() {
        var a = RowGenerator(seed: 42, invalidRate: 0.2)
        var b = RowGenerator(seed: 42, invalidRate: 0.2)
        var c = RowGenerator(seed: 43, invalidRate: 0.2)
        let rowsA = (0..<5).flatMap { _ in a.batch(rows: 50, now: now) }
        let rowsB = (0..<5).flatMap { _ in b.batch(rows: 50, now: now) }
        let rowsC = (0..<5).flatMap { _ in c.batch(rows: 50, now: now) }
        #expect(rowsA.map(\.csvLine) == rowsB.map(\.csvLine))
        #expect(rowsA.map(\.csvLine) != rowsC.map(\.csvLine))
    }

    @Test func realisticMix() {
        var g = RowGenerator(seed: 1, invalidRate: 0)
        let rows = g.batch(rows: 20_000, now: now)
        let purchases = rows.filter { $0.cells[3] == "purchase" }
        #expect(abs(Double(purchases.count) / 20_000 - 0.3) < 0.02)
        #expect(purchases.allSatisfy { Double($0.cells[4])! >= 1 && Double($0.cells[4])! <= 500 })
        #expect(rows.allSatisfy { (1...100_000).contains(Int($0.cells[1])!) && (1...5000).contains(Int($0.cells[2])!) })
        #expect(rows.contains { $0.cells[5].contains("T") } && rows.contains { $0.cells[5].contains(" ") })
        #expect(Set(rows.map(\.cells[0])).count == rows.count)
    }

    @Test func invalidRateIsRoughlyHonoured() {
        var g = RowGenerator(seed: 9, invalidRate: 0.04)
        let rows = (0..<400).flatMap { _ in g.batch(rows: 50, now: now) }
        let share = Double(rows.filter { $0.brokenRule != nil }.count) / Double(rows.count)
        #expect(abs(share - 0.04) < 0.01)
    }

    @Test func everyRuleIsChosen() {
        var g = RowGenerator(seed: 3, invalidRate: 0.5)
        let rules = Set((0..<20).flatMap { _ in g.batch(rows: 50, now: now) }.compactMap(\.brokenRule))
        #expect(rules == Set(InvalidRule.allCases))
    }

    @Test(arguments: [UInt64(1), 2, 3, 4, 5])
    func validRowsPassAndInvalidRowsBreakExactlyTheirRule(seed: UInt64) throws {
        var g = RowGenerator(seed: seed, invalidRate: 0.5)
        let rows = g.batch(rows: 200, now: now)
        let out = try validateCSV(rows, now: now)
        #expect(out.count == rows.count + 1)  // + the eof marker
        for (row, line) in zip(rows, out) {
            if let rule = row.brokenRule {
                let reasons = decodedReasons(line)
                #expect(line.hasPrefix(#"{"kind":"reject""#), "\(rule): \(row.csvLine)")
                #expect(reasons.count == 1, "\(rule): \(row.csvLine) → \(reasons)")
                #expect(reasons.first?.field == rule.field, "\(rule): \(row.csvLine) → \(reasons)")
                if rule == .duplicateEventID { #expect(reasons.first?.reason == "duplicate event_id (earlier in this file)") }
                if rule == .fieldCount { #expect(reasons.first?.reason.hasPrefix("expected 6 fields") == true) }
            } else {
                #expect(line.hasPrefix(#"{"kind":"record""#), "\(row.csvLine) → \(line)")
                #expect(line.contains("\"event_id\":\"\(row.eventID!)\""))
            }
        }
    }

    @Test func stdoutRecordsValidateLikeTheFile() {
        var g = RowGenerator(seed: 11, invalidRate: 0.5)
        let rows = g.batch(rows: 300, now: now)
        var lines: [UInt8] = []
        BatchEncoding.appendRecords(rows, into: &lines)
        let text = String(decoding: lines, as: UTF8.self)
        #expect(!text.contains("\"file\""))
        var stage = StreamValidator(clock: { now })
        var out: [UInt8] = []
        for line in lines.split(separator: 0x0A) {
            Array(line).withUnsafeBytes { _ = stage.process($0, inputLine: 0, into: &out) }
        }
        #expect(stage.counts.valid == rows.filter { $0.brokenRule == nil }.count)
        #expect(stage.counts.rejected == rows.filter { $0.brokenRule != nil }.count)
    }

    @Test func manifestLine() {
        let rows = [
            GeneratedRow(cells: ["a"], brokenRule: nil, eventID: "id-1"),
            GeneratedRow(cells: ["b"], brokenRule: .price, eventID: nil),
        ]
        var out: [UInt8] = []
        BatchEncoding.appendManifestLine(file: "batch_x.csv", rows: rows, into: &out)
        #expect(
            String(decoding: out, as: UTF8.self) == """
                {"file":"batch_x.csv","rows":2,"valid":1,"invalid":1,"valid_event_ids":["id-1"],"invalid_lines":[{"line":3,"rule":"price"}]}

                """)
    }

    @Test func uuidsAreVersion4() {
        var r = SplitMix64(seed: 5)
        for _ in 0..<100 {
            let text = r.uuid().text
            let chars = Array(text)
            #expect(chars[14] == "4")
            #expect("89ab".contains(chars[19]))
        }
    }
}

@Suite struct BatchWriterTests {
    @Test func fileNames() {
        let t = UTCTimestamp(parsing: "2024-01-30T10:15:23.999Z")!
        #expect(BatchWriter.fileName(time: t, sequence: 42) == "batch_20240130_101523_000042.csv")
        #expect(BatchWriter.fileName(time: t, sequence: 1_234_567) == "batch_20240130_101523_1234567.csv")
    }

    @Test func neverOverwritesAndLeavesNoTemporaryFiles() throws {
        let root = "/tmp/batch-writer-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        let dir = root + "/a/b"  // parents are created too
        defer {
            rmdir(dir)
            rmdir(root + "/a")
            rmdir(root)
        }
        let t = UTCTimestamp(parsing: "2024-01-30T10:15:23Z")!
        var first = try BatchWriter(folder: dir)
        var second = try BatchWriter(folder: dir)  // another run, same second, same sequence
        let n1 = try first.write(Array("one\n".utf8), time: t)
        let n2 = try second.write(Array("two\n".utf8), time: t)
        #expect(n1 == "batch_20240130_101523_000000.csv")
        #expect(n2 == "batch_20240130_101523_000001.csv")
        var names: [String] = []
        if let d = opendir(dir) {
            while let e = readdir(d) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if !name.hasPrefix(".") || name.hasSuffix(".tmp") { names.append(name) }
            }
            closedir(d)
        }
        #expect(names.sorted() == [n1, n2])
        let fd = open("\(dir)/\(n1)", O_RDONLY)
        var buffer = [UInt8](repeating: 0, count: 16)
        let n = read(fd, &buffer, 16)
        close(fd)
        #expect(String(decoding: buffer.prefix(n), as: UTF8.self) == "one\n")
        for name in names { unlink("\(dir)/\(name)") }
    }

    @Test func unwritableFolderThrowsNamingIt() {
        #expect(throws: SystemError.self) { try BatchWriter(folder: "/proc/nope/incoming") }
        do {
            _ = try BatchWriter(folder: "/proc/nope/incoming")
        } catch {
            #expect("\(error)".contains("/proc/nope"))
        }
    }
}
