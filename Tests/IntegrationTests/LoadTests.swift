import Foundation
import Ingest
import Loading
import Postgres
import TestSupport
import Testing

/// Folders and protocol lines for `load`, with the ground truth of what must end up where.
final class LoadFixture {
    let root: URL
    var incoming: URL { root.appendingPathComponent("incoming") }
    var bad: URL { root.appendingPathComponent("bad") }
    var processed: URL { root.appendingPathComponent("processed") }
    private(set) var validIDs: [String] = []
    private(set) var rejectsPerFile: [String: Int] = [:]

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("load-\(UUID().uuidString)")
        for dir in [incoming, bad, processed] {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        }
    }

    deinit { try? FileManager.default.removeItem(at: root) }

    /// Writes a source file into incoming/ and returns the lines `watch | validate` would emit for it.
    func file(_ name: String, valid: Int, rejects: Int, extraRecords: [String] = []) throws -> [String] {
        var lines: [String] = []
        var csv = EventField.csvHeader + "\n"
        var lineNumber = 1
        for _ in 0..<valid {
            lineNumber += 1
            let id = UUID().uuidString.lowercased()
            validIDs.append(id)
            lines.append(
                #"{"kind":"record","file":"\#(name)","line":\#(lineNumber),"event_id":"\#(id)","user_id":\#(lineNumber),"product_id":7,"event_type":"purchase","price":"12.50","event_timestamp":"2024-01-30T10:15:23.123Z"}"#
            )
            csv += "\(id),\(lineNumber),7,purchase,12.50,2024-01-30T10:15:23.123Z\n"
        }
        for _ in 0..<rejects {
            lineNumber += 1
            lines.append(
                #"{"kind":"reject","file":"\#(name)","line":\#(lineNumber),"raw":"x,y","reasons":[{"field":null,"reason":"expected 6 fields, found 2"}]}"#
            )
            csv += "x,y\n"
        }
        lines += extraRecords
        rejectsPerFile[name, default: 0] += rejects
        let url = incoming.appendingPathComponent(name)
        if ContainedFolder.problem(with: name) == nil {
            try Data(csv.utf8).write(to: url)
        }
        let digest =
            (try? FileDigest.of(path: url.path)) ?? FileDigest(bytes: Int64(csv.utf8.count), sha256: String(repeating: "0", count: 64))
        lines.append(
            #"{"kind":"eof","file":"\#(name)","rows":\#(valid + rejects + extraRecords.count),"bytes":\#(digest.bytes),"sha256":"\#(digest.sha256)","seen":"\#(UTCTimestamp.now().rfc3339)"}"#
        )
        return lines
    }

    func arguments(_ db: TestDatabase, _ extra: [String] = []) -> [String] {
        ["--db", db.conninfo, "--incoming", incoming.path, "--bad-records", bad.path, "--archive", processed.path] + extra
    }

    func deadLetterLines(_ name: String) throws -> [String] {
        let text = try String(contentsOf: bad.appendingPathComponent(name + ".ndjson"), encoding: .utf8)
        return text.split(separator: "\n").map(String.init)
    }
}

func stdinData(_ lines: [String]) -> Data { Data((lines.joined(separator: "\n") + "\n").utf8) }

/// Runs `body` with a new login role in `ingest_loader` (name, password), dropped afterwards;
/// `options` go into its CREATE ROLE (e.g. `CONNECTION LIMIT 1`).
func withLoaderRole<R>(_ db: TestDatabase, prefix: String, options: String = "", _ body: (_ role: String, _ password: String) throws -> R)
    throws -> R
{
    let role = "\(prefix)_\(getpid())_\(String(UInt32.random(in: .min ... .max), radix: 16))"
    let password = UUID().uuidString
    try db.query("CREATE ROLE \(quoteIdentifier(role)) LOGIN PASSWORD '\(password)' \(options) IN ROLE ingest_loader")
    defer { _ = try? db.query("DROP ROLE IF EXISTS \(quoteIdentifier(role))") }
    return try body(role, password)
}

func count(_ db: TestDatabase, _ sql: String, _ params: [String?] = []) throws -> Int {
    Int(try db.scalar(sql, params) ?? "") ?? -1
}

@Suite(.serialized) struct LoadTests {
    let load = Executables.url("load")

    @Test func cleanRunLoadsExactlyTheValidRowsAndDeadLettersTheRest() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            var lines: [String] = []
            for i in 0..<3 { lines += try f.file("batch_\(i).csv", valid: 100, rejects: 3) }
            let result = try runTool(load, f.arguments(db), stdin: stdinData(lines))
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.isEmpty)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 300)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_bad_records") == 9)
            #expect(try count(db, "SELECT count(*) FROM ingest_checkpoints WHERE rows_loaded = 100 AND rows_rejected = 3") == 3)
            for i in 0..<3 {
                #expect(try f.deadLetterLines("batch_\(i).csv").count == 3)
                #expect(FileManager.default.fileExists(atPath: f.processed.appendingPathComponent("batch_\(i).csv").path))
                #expect(!FileManager.default.fileExists(atPath: f.incoming.appendingPathComponent("batch_\(i).csv").path))
            }
            #expect(result.stderr.contains("Processed 309 records"))
            #expect(result.stderr.contains("Valid: 300, Invalid: 9"))
        }
    }

    @Test func replayedFilesAreSkippedNotDoubled() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            var lines: [String] = []
            for i in 0..<2 { lines += try f.file("batch_\(i).csv", valid: 50, rejects: 2) }
            let first = try runTool(load, f.arguments(db, ["--keep"]), stdin: stdinData(lines))
            #expect(first.status == 0, "\(first.stderr)")
            let second = try runTool(load, f.arguments(db, ["--keep"]), stdin: stdinData(lines))
            #expect(second.status == 0, "\(second.stderr)")
            #expect(second.stderr.contains("batch_0.csv: already committed, skipped"))
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 100)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_bad_records") == 4)
            #expect(try count(db, "SELECT count(*) FROM ingest_checkpoints") == 2)
            #expect(try f.deadLetterLines("batch_0.csv").count == 2)
            // --keep journals the committed files for watch.
            let journal = try String(contentsOf: f.incoming.appendingPathComponent(".ingest-committed"), encoding: .utf8)
            #expect(journal.split(separator: "\n").count == 2)
        }
    }

    @Test func aFileWithoutItsEndMarkerIsNeverCommitted() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let complete = try f.file("a.csv", valid: 10, rejects: 0)
            let cut = try f.file("b.csv", valid: 10, rejects: 1).dropLast()
            let result = try runTool(load, f.arguments(db), stdin: stdinData(complete + cut))
            #expect(result.status == 0)
            #expect(result.stderr.contains("b.csv: input ended before its end marker"))
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 10)
            #expect(try count(db, "SELECT count(*) FROM ingest_checkpoints WHERE source_file = 'b.csv'") == 0)
            #expect(FileManager.default.fileExists(atPath: f.incoming.appendingPathComponent("b.csv").path))
        }
    }

    /// A producer killed mid-write leaves half a line at the end of the stream: dropped with a
    /// warning, never a reject (the file's rows come again after a restart).
    @Test func aHalfLineAtEndOfInputIsDroppedNotRejected() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let complete = try f.file("a.csv", valid: 3, rejects: 0)
            let next = try f.file("b.csv", valid: 3, rejects: 0)
            let input = stdinData(complete) + Data(next[0].prefix(40).utf8)
            let result = try runTool(load, f.arguments(db), stdin: input)
            #expect(result.status == 0)
            #expect(result.stderr.contains("input ended in the middle of a line (40 bytes dropped)"))
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 3)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_bad_records") == 0)
        }
    }

    @Test func anEventIDAlreadyInTheTableBecomesADuplicateReject() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let lines = try f.file("dup.csv", valid: 20, rejects: 0)
            let existing = f.validIDs[5]
            try db.query(
                "INSERT INTO ecommerce_events (event_id, user_id, product_id, event_type, price, event_timestamp) VALUES ($1, 1, 1, 'view', NULL, now())",
                [existing])
            let result = try runTool(load, f.arguments(db), stdin: stdinData(lines))
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 20)
            #expect(try count(db, "SELECT rows_loaded FROM ingest_checkpoints WHERE source_file = 'dup.csv'") == 19)
            #expect(try count(db, "SELECT rows_rejected FROM ingest_checkpoints WHERE source_file = 'dup.csv'") == 1)
            let letters = try f.deadLetterLines("dup.csv")
            #expect(letters.count == 1)
            #expect(letters.first?.contains("duplicate event_id (already in the table)") == true)
            #expect(letters.first?.contains(existing) == true)
            #expect(try db.scalar("SELECT reasons->0->>'reason' FROM ecommerce_bad_records") == "duplicate event_id (already in the table)")
        }
    }

    @Test func rowsTheDatabaseRefusesAreIsolatedAndTheRestCommits() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let refused = [
                #"{"kind":"record","file":"mixed.csv","line":90,"event_id":"\#(UUID().uuidString)","user_id":1,"product_id":1,"event_type":"purchase","price":"123456789012.00","event_timestamp":"2024-01-30T10:15:23.123Z"}"#,
                #"{"kind":"record","file":"mixed.csv","line":91,"event_id":"not-a-uuid","user_id":1,"product_id":1,"event_type":"view","price":null,"event_timestamp":"2024-01-30T10:15:23.123Z"}"#,
                #"{"kind":"record","file":"mixed.csv","line":92,"event_id":"\#(UUID().uuidString)","user_id":"x;DROP TABLE ecommerce_events;--","product_id":1,"event_type":"view","price":null,"event_timestamp":"2024-01-30T10:15:23.123Z"}"#,
            ]
            let lines = try f.file("mixed.csv", valid: 40, rejects: 1, extraRecords: refused)
            let result = try runTool(load, f.arguments(db), stdin: stdinData(lines))
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 40)
            #expect(try count(db, "SELECT rows_rejected FROM ingest_checkpoints WHERE source_file = 'mixed.csv'") == 4)
            let letters = try f.deadLetterLines("mixed.csv")
            #expect(letters.count == 4)
            #expect(letters.filter { $0.contains("database refused the row: ERROR 22003") }.count == 1)
            #expect(letters.filter { $0.contains("database refused the row: ERROR 22P02") }.count == 2)
        }
    }

    /// Repeats of an id within one file, found while isolating: a repeat is a duplicate only
    /// when its earlier row loaded; a repeat of a row the server refused for another reason loads.
    @Test func repeatedIDsAreDuplicatesOnlyWhenTheEarlierRowLoaded() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let refusedFirst = UUID().uuidString.lowercased()
            let loadedFirst = UUID().uuidString.lowercased()
            func record(_ line: Int, _ id: String, price: String) -> String {
                #"{"kind":"record","file":"repeats.csv","line":\#(line),"event_id":"\#(id)","user_id":1,"product_id":1,"event_type":"purchase","price":"\#(price)","event_timestamp":"2024-01-30T10:15:23.123Z"}"#
            }
            let extra = [
                record(90, refusedFirst, price: "123456789012.00"),  // numeric overflow: 22003
                record(91, loadedFirst, price: "1.00"),
                record(92, refusedFirst, price: "2.00"),  // its earlier row was refused: loads
                record(93, loadedFirst, price: "3.00"),  // its earlier row loaded: a duplicate
            ]
            let lines = try f.file("repeats.csv", valid: 30, rejects: 0, extraRecords: extra)
            let result = try runTool(load, f.arguments(db), stdin: stdinData(lines))
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 32)
            #expect(try db.scalar("SELECT price::text FROM ecommerce_events WHERE event_id = $1", [refusedFirst]) == "2.00")
            #expect(try db.scalar("SELECT price::text FROM ecommerce_events WHERE event_id = $1", [loadedFirst]) == "1.00")
            let letters = try f.deadLetterLines("repeats.csv")
            #expect(letters.count == 2, "\(letters)")
            #expect(letters.filter { $0.contains("database refused the row: ERROR 22003") && $0.contains(refusedFirst) }.count == 1)
            // The repeat is one of this file (its first row loaded in this batch), not of the table.
            #expect(
                letters.filter { $0.contains("duplicate event_id (earlier in this file, line 91)") && $0.contains(loadedFirst) }.count == 1)
        }
    }

    /// Both commit sessions connect at start-up, before the first line: a second session opened
    /// at its first batch put a connection's cost (~20 ms) into that file's rename-to-commit delay.
    @Test func bothCommitSessionsConnectBeforeTheFirstLine() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let process = Process()
            process.executableURL = load
            process.arguments = f.arguments(db)
            let input = Pipe()
            let errors = Pipe()
            process.standardInput = input
            process.standardError = errors
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let log = DrainedPipe(errors)
            func connected() throws -> Int {
                Int(
                    try db.scalar(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'ingest-load %' AND datname = current_database()"
                    ) ?? "0") ?? 0
            }
            #expect(try eventually(timeout: 30) { try connected() == 2 }, "\(log.snapshot())")
            // Still before any line: the sessions stay open, and the load ends cleanly at EOF.
            #expect(process.isRunning)
            try input.fileHandleForWriting.write(contentsOf: stdinData(try f.file("first.csv", valid: 3, rejects: 0)))
            try input.fileHandleForWriting.close()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "\(log.text())")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 3)
        }
    }

    /// load commits in two sessions; a role allowed one connection gets everything loaded in one,
    /// with one warning saying so.
    @Test func aRoleLimitedToOneConnectionLoadsInOneSession() throws {
        try TestDatabase.with { db in
            try withLoaderRole(db, prefix: "ingest_one_session", options: "CONNECTION LIMIT 1") { role, password in
                let f = try LoadFixture()
                var lines: [String] = []
                for n in 0..<6 { lines += try f.file("one-\(n).csv", valid: 4, rejects: 1) }
                var environment = ProcessInfo.processInfo.environment
                environment["PGPASSWORD"] = nil
                environment["PGUSER"] = nil
                let result = try runTool(
                    load,
                    ["--db", "\(db.conninfo) user=\(role) password=\(password)"]
                        + Array(f.arguments(db, ["--batch-rows", "5"]).dropFirst(2)),
                    stdin: stdinData(lines), environment: environment)
                #expect(result.status == 0, "\(result.stderr)")
                #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 24)
                #expect(try count(db, "SELECT count(*) FROM ecommerce_bad_records") == 6)
                #expect(try count(db, "SELECT count(*) FROM ingest_checkpoints") == 6)
                #expect(
                    result.stderr.components(separatedBy: "a second database session could not be opened").count == 2, "\(result.stderr)")
                #expect(!result.stderr.contains(password))
            }
        }
    }

    @Test func recordsWithoutProvenanceLoadAndReplaysBecomeRejects() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let ids = (0..<5).map { _ in UUID().uuidString }
            let lines =
                ids.map {
                    #"{"event_id":"\#($0)","user_id":3,"product_id":4,"event_type":"view","price":null,"event_timestamp":"2024-01-30T10:15:23.123Z"}"#
                } + ["this is not json"]
            let first = try runTool(load, f.arguments(db), stdin: stdinData(lines))
            #expect(first.status == 0, "\(first.stderr)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 5)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_bad_records WHERE reasons->0->>'reason' LIKE 'malformed JSON%'") == 1)
            let again = try runTool(load, f.arguments(db), stdin: stdinData(lines))
            #expect(again.status == 0)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 5)
            #expect(
                try count(
                    db,
                    "SELECT count(*) FROM ecommerce_bad_records WHERE reasons->0->>'reason' = 'duplicate event_id (already in the table)'")
                    == 5)
        }
    }

    /// A line over load's 64 MiB limit becomes the reject validate writes for one (its size, not
    /// its text), and the stream goes on: the record after it loads.
    @Test func anOverlongLineIsRejectedInValidatesFormAndTheStreamGoesOn() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let limit = 64 << 20
            let long = #"{"event_id":""# + String(repeating: "x", count: limit) + #""}"#
            let id = UUID().uuidString
            let record =
                #"{"event_id":"\#(id)","user_id":3,"product_id":4,"event_type":"view","price":null,"event_timestamp":"2024-01-30T10:15:23.123Z"}"#
            let result = try runTool(load, f.arguments(db), stdin: stdinData([long, record]))
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events WHERE event_id = '\(id)'") == 1)
            let rejects = try db.query("SELECT reasons->0->>'reason', raw FROM ecommerce_bad_records")
            #expect(rejects.count == 1)
            #expect(rejects.first?[0] == "line longer than \(limit) bytes", "\(rejects)")
            #expect(rejects.first?[1]?.contains(#""byte_count":\#(long.utf8.count)"#) == true, "\(rejects)")
        }
    }

    @Test func namesThatEscapeTheFolderAreNeverUsedAsPaths() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let outside = f.root.appendingPathComponent("outside.csv")
            try Data("keep me".utf8).write(to: outside)
            var lines: [String] = []
            for name in ["../outside.csv", "/etc/passwd", "a/../../b.csv", ".."] {
                lines += try f.file(name, valid: 2, rejects: 1)
            }
            let result = try runTool(load, f.arguments(db), stdin: stdinData(lines))
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 8)
            #expect(try String(contentsOf: outside, encoding: .utf8) == "keep me")
            #expect(FileManager.default.fileExists(atPath: "/etc/passwd"))
            let letters = try FileManager.default.contentsOfDirectory(atPath: f.bad.path)
            #expect(letters.count == 4)
            #expect(letters.allSatisfy { $0.hasPrefix("unsafe-name_") })
            #expect(
                try FileManager.default.contentsOfDirectory(atPath: f.root.path).sorted() == [
                    "bad", "incoming", "outside.csv", "processed",
                ])
        }
    }

    @Test func permanentErrorsStopWithOneClearLine() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let lines = try f.file("a.csv", valid: 1, rejects: 0)
            let missing = try runTool(load, f.arguments(db, ["--table", "no_such_table"]), stdin: stdinData(lines), timeout: 30)
            #expect(missing.status == 1)
            #expect(missing.stderr.contains("42P01"))
            #expect(missing.stderr.contains("no_such_table"))

            let secret = "Sup3r-Secret-\(UUID().uuidString.prefix(8))"
            let denied = try runTool(
                load, ["--db", "\(db.conninfo) user=nobody_here password=\(secret)"] + Array(f.arguments(db).dropFirst(2)),
                stdin: stdinData(lines), timeout: 30)
            #expect(denied.status == 1)
            #expect(denied.stderr.contains("28P01") || denied.stderr.contains("28000"), "\(denied.stderr)")
            #expect(!denied.stderr.contains(secret))
            #expect(!denied.stdout.contains(secret))
        }
    }

    @Test func passwordFromEnvironmentIsNeverPrinted() throws {
        let f = try LoadFixture()
        let secret = "Env-Secret-\(UUID().uuidString.prefix(8))"
        var env = ProcessInfo.processInfo.environment
        env["PGPASSWORD"] = nil
        env["PGHOST"] = nil
        env["PGPORT"] = nil
        env["POSTGRES_HOST"] = "127.0.0.1"
        env["POSTGRES_PORT"] = "1"  // nothing listens there
        env["POSTGRES_PASSWORD"] = secret
        let result = try runTool(
            load, ["--max-retries", "1", "--incoming", f.incoming.path, "--bad-records", f.bad.path], stdin: Data(),
            environment: env, currentDirectory: f.root, timeout: 30)
        #expect(result.status == 1)
        #expect(result.stderr.contains("127.0.0.1"))
        #expect(result.stderr.contains("retrying"))
        #expect(!result.stderr.contains(secret))
        let help = try runTool(load, ["--help"], environment: env)
        #expect(help.status == 0)
        #expect(!help.stdout.contains(secret))
        #expect(help.stdout.contains("--batch-rows"))
    }
}
