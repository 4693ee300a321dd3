import Foundation
import Ingest
import TestSupport
import Testing

/// A file whose last byte is not a newline is held until quiet (issue 22, item 4): a writer
/// that closes and reopens a file, or writes it in two parts, no longer has its first part
/// committed, its cut row dead-lettered and its rest quarantined.
@Suite struct SettleTests {
    /// `rows` valid CSV rows (with the header), the last with `lastTimestamp`.
    static func csv(rows: Int, lastTimestamp: String = "2026-01-30T10:01:32.537Z") -> String {
        var text = EventField.csvHeader + "\n"
        for i in 1...rows {
            let stamp = i == rows ? lastTimestamp : "2026-01-30T10:01:32.123Z"
            text += "\(UUID().uuidString.lowercased()),\(i),7,purchase,12.50,\(stamp)\n"
        }
        return text
    }

    /// `watch DIR | validate | load` on a fresh database, `body`, then a stop: watch's first
    /// SIGINT ends the pipeline once every stage drained.
    static func following(_ watchArguments: [String], _ body: (URL, TestDatabase, Pipeline) throws -> Void) throws {
        try TestDatabase.with { db in
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("settle-\(UUID().uuidString.prefix(8))")
            let incoming = root.appendingPathComponent("incoming")
            let processed = root.appendingPathComponent("processed")
            let bad = root.appendingPathComponent("bad")
            for dir in [incoming, processed, bad] { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) }
            defer { try? FileManager.default.removeItem(at: root) }
            let pipeline = try Pipeline(
                folder: root, incoming: incoming, processed: processed, bad: bad, environment: ProcessInfo.processInfo.environment,
                watchArguments: watchArguments,
                loadArguments: ["--db", db.conninfo, "--quarantine", root.appendingPathComponent("quarantine").path])
            #expect(eventually(timeout: 30) { pipeline.log("watch").contains("Watching") })
            try body(incoming, db, pipeline)
            pipeline.signal("watch", SIGINT)
            #expect(pipeline.waitForExit(timeout: 60))
            #expect(try FileManager.default.contentsOfDirectory(atPath: bad.path).isEmpty, "dead letters: \(pipeline.log("load"))")
            let quarantined = (try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("quarantine").path)) ?? []
            #expect(quarantined.isEmpty, "quarantined: \(quarantined)")
        }
    }

    static func append(_ text: Substring, to url: URL) throws {
        let handle = try FileHandle(forWritingTo: url)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(text.utf8))
        try handle.close()
    }

    /// Half of a 5,000-row file written in place and closed, the cut inside a row; the rest
    /// appended 3 s later: all 5,000 rows load, in one commit of the whole file.
    @Test func aFileWrittenInTwoPartsLoadsWhole() throws {
        try Self.following(["--settle", "10s"]) { incoming, db, pipeline in
            let text = Self.csv(rows: 5_000)
            let cut = text.index(text.startIndex, offsetBy: text.utf8.count / 2 + 7)
            let url = incoming.appendingPathComponent("halves.csv")
            try Data(text[..<cut].utf8).write(to: url)
            sleep(3)
            try Self.append(text[cut...], to: url)
            #expect(
                try eventually(timeout: 60) { try db.scalar("SELECT count(*) FROM ecommerce_events") == "5000" }, "\(pipeline.log("load"))")
            #expect(try db.scalar("SELECT count(*) FROM ingest_checkpoints") == "1")
            #expect(pipeline.log("watch").contains("Holding"), "\(pipeline.log("watch"))")
        }
    }

    /// The cut falls inside the last row's timestamp (`…32.5` of `…32.537Z`), a value that is
    /// valid on its own: the full value is committed, not the shorter one.
    @Test func aCutInsideTheLastTimestampLoadsTheFullValue() throws {
        try Self.following(["--settle", "10s"]) { incoming, db, pipeline in
            let text = Self.csv(rows: 1_000)
            let cut = text.range(of: "10:01:32.537Z")!.lowerBound
            let url = incoming.appendingPathComponent("cut.csv")
            try Data(text[..<text.index(cut, offsetBy: 10)].utf8).write(to: url)  // ends in "10:01:32.5"
            sleep(2)
            try Self.append(text[text.index(cut, offsetBy: 10)...], to: url)
            #expect(
                try eventually(timeout: 60) { try db.scalar("SELECT count(*) FROM ecommerce_events") == "1000" }, "\(pipeline.log("load"))")
            #expect(
                try db.scalar(
                    "SELECT to_char(event_timestamp AT TIME ZONE 'UTC', 'HH24:MI:SS.MS') FROM ecommerce_events WHERE user_id = 1000")
                    == "10:01:32.537")
        }
    }

    /// A finished writer's file without a final newline loads, once quiet for the settle time.
    @Test func aFinishedFileWithoutAFinalNewlineLoadsAfterTheSettleTime() throws {
        try Self.following(["--settle", "2s"]) { incoming, db, pipeline in
            let text = Self.csv(rows: 300).dropLast()
            let written = Date()
            try Data(text.utf8).write(to: incoming.appendingPathComponent("no-newline.csv"))
            #expect(
                try eventually(timeout: 60) { try db.scalar("SELECT count(*) FROM ecommerce_events") == "300" }, "\(pipeline.log("load"))")
            #expect(Date().timeIntervalSince(written) >= 2)
        }
    }

    /// `--min-age`: a complete-looking file is held until that old, so a writer that closes
    /// between rows (its file ends in a newline at every close) appends before it is read.
    @Test func minAgeHoldsAFileThatEndsBetweenRows() throws {
        try Self.following(["--min-age", "8s"]) { incoming, db, pipeline in
            let text = Self.csv(rows: 2_000)
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            let firstPart = lines[..<1001].joined(separator: "\n") + "\n"
            let url = incoming.appendingPathComponent("rows.csv")
            try Data(firstPart.utf8).write(to: url)
            sleep(2)
            try Self.append(text.dropFirst(firstPart.utf8.count)[...], to: url)
            #expect(
                try eventually(timeout: 60) { try db.scalar("SELECT count(*) FROM ecommerce_events") == "2000" }, "\(pipeline.log("load"))")
            #expect(try db.scalar("SELECT count(*) FROM ingest_checkpoints") == "1")
        }
    }
}
