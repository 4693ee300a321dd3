import Foundation
import Ingest
import Postgres
import TestSupport
import Testing

@testable import Loading

/// Isolation (issue 25): keys repeated within a batch are found in memory before any COPY, the
/// rest loads in one COPY, and a slow isolation says what it is doing (metrics, log, bin/status).
@Suite struct IsolationTests {
    let load = Executables.url("load")

    /// `lines` (one file's, as `LoadFixture.file` made them) with `extra` records before its end
    /// marker, which then counts them.
    static func adding(_ extra: [String], to lines: [String]) -> [String] {
        var out = lines.filter { !$0.contains(#""kind":"eof""#) } + extra
        if var eof = lines.last(where: { $0.contains(#""kind":"eof""#) }),
            let range = eof.range(of: #""rows":\d+"#, options: .regularExpression)
        {
            let rows = Int(eof[range].dropFirst(7)) ?? 0
            eof.replaceSubrange(range, with: #""rows":\#(rows + extra.count)"#)
            out.append(eof)
        }
        return out
    }
    /// A record line of `file` at `line` with `id`.
    static func record(_ file: String, _ line: Int, _ id: String, user: Int = 1) -> String {
        #"{"kind":"record","file":"\#(file)","line":\#(line),"event_id":"\#(id)","user_id":\#(user),"product_id":1,"event_type":"purchase","price":"3.00","event_timestamp":"2024-01-30T10:15:23.123Z"}"#
    }

    /// Repeats of earlier ids of the same file (past validate's memory): rejected with the line of
    /// the first row, found in memory; the rest loads in one COPY, never probed or bisected.
    @Test func repeatsWithinAFileAreFoundInMemory() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            // The fixture's valid rows are lines 2…3001; repeat every tenth, in reverse order and in
            // upper case (the same uuid for the server).
            var extra: [String] = []
            let lines = try f.file("repeats.csv", valid: 3000, rejects: 5)
            let ids = f.validIDs
            for k in stride(from: 299, through: 0, by: -1) {
                extra.append(Self.record("repeats.csv", 4000 + k, ids[k * 10].uppercased()))
            }
            let records = Self.adding(extra, to: lines)
            let result = try runTool(load, f.arguments(db, ["--log-level", "debug"]), stdin: stdinData(records))
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 3000)
            let letters = try f.deadLetterLines("repeats.csv")
            #expect(letters.count == 305)
            for k in [0, 7, 299] {
                let mine = letters.filter { $0.contains(ids[k * 10].uppercased()) }
                #expect(mine.count == 1, "\(mine)")
                #expect(mine.first?.contains("duplicate event_id (earlier in this file, line \(k * 10 + 2))") == true, "\(mine)")
            }
            #expect(result.stderr.contains("300 records repeat the key of an earlier record of the batch"), "\(result.stderr)")
            #expect(!result.stderr.contains("isolating by probe and bisection"), "\(result.stderr)")
            #expect(try count(db, "SELECT rows_loaded FROM ingest_checkpoints WHERE source_file = 'repeats.csv'") == 3000)
            #expect(try count(db, "SELECT rows_rejected FROM ingest_checkpoints WHERE source_file = 'repeats.csv'") == 305)
        }
    }

    /// Repeats within the file beside a key the table held before: the one COPY of the rest is
    /// refused, probe and bisection find that key; each reject says which it is.
    @Test func aKeyAlreadyInTheTableBesideRepeats() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let old = UUID().uuidString.lowercased()
            try db.query(
                "INSERT INTO ecommerce_events (event_id, user_id, product_id, event_type, price, event_timestamp) VALUES ($1, 1, 1, 'view', NULL, now())",
                [old])
            let base = try f.file("mixed.csv", valid: 200, rejects: 0)
            let ids = f.validIDs
            let extra = [
                Self.record("mixed.csv", 900, ids[3]), Self.record("mixed.csv", 901, old), Self.record("mixed.csv", 902, ids[3]),
                Self.record("mixed.csv", 903, ids[150]),
            ]
            let lines = Self.adding(extra, to: base)
            let result = try runTool(load, f.arguments(db), stdin: stdinData(lines))
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 201)
            let letters = try f.deadLetterLines("mixed.csv")
            #expect(letters.count == 4, "\(letters)")
            #expect(letters.filter { $0.contains("earlier in this file, line 5)") && $0.contains(ids[3]) }.count == 2)
            #expect(letters.filter { $0.contains("earlier in this file, line 152)") && $0.contains(ids[150]) }.count == 1)
            #expect(letters.filter { $0.contains("duplicate event_id (already in the table)") && $0.contains(old) }.count == 1)
            #expect(result.stderr.contains("isolating by probe and bisection"), "\(result.stderr)")
        }
    }

    /// A slow isolation (each row costs the server 20 ms, a few refused) tells the truth while it
    /// runs: the metrics and bin/status count the rows being isolated and those left, and load
    /// logs the file it isolates, and how far it is every few seconds.
    @Test func aSlowIsolationSaysWhatItIsDoing() throws {
        try TestDatabase.with { db in
            try db.query(
                """
                CREATE FUNCTION slow_check() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM pg_sleep(0.02);
                    IF NEW.user_id % 100 = 7 THEN RAISE EXCEPTION 'user % is refused', NEW.user_id USING ERRCODE = '23514'; END IF;
                    RETURN NEW;
                END $$
                """)
            try db.query("CREATE TRIGGER slow BEFORE INSERT ON ecommerce_events FOR EACH ROW EXECUTE FUNCTION slow_check()")
            let serving = try ServingLoad(db: db)
            defer { serving.stop() }
            let f = try LoadFixture()
            // user_id is the line number: lines 7, 107, … 507 are refused (6 of 600).
            let lines = try f.file("slow.csv", valid: 600, rejects: 0)
            serving.input.fileHandleForWriting.write(stdinData(lines))
            var metrics: [String: Double] = [:]
            #expect(
                eventually(timeout: 120) {
                    metrics = (try? scrape(serving.url)) ?? [:]
                    return metrics["ingest_rows_isolating"] == 600
                }, "never seen isolating: \(metrics); \(serving.stderr())")
            let left = metrics["ingest_rows_isolating_left"] ?? -1
            #expect(left > 0 && left <= 600, "\(metrics)")
            #expect(metrics["ingest_rows_committing"] == 600)
            #expect(serving.stderr().contains("slow.csv: isolating 600 rows"), "\(serving.stderr())")

            // bin/status --json reads the same figures through bin/lib/progress.sh.
            let dir = try TemporaryFolder("isolation-status")
            try "\(serving.url)\n".write(toFile: dir.path("metrics-url"), atomically: true, encoding: .utf8)
            var env = ProcessInfo.processInfo.environment
            env["PGDATABASE"] = db.name
            env["INGEST_METRICS_URL_FILE"] = dir.path("metrics-url")
            env["INGEST_INCOMING"] = f.incoming.path
            let status = try runTool(
                TestDatabase.packageRoot.appendingPathComponent("bin/status"), ["--json"], environment: env, timeout: 60)
            #expect(status.status == 0, "\(status.stderr)")
            let json = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
            #expect(json?["rows_isolating"] as? Int == 600, "\(status.stdout)")
            #expect(json?["rows_committing"] as? Int == 600, "\(status.stdout)")
            #expect((json?["rows_isolating_left"] as? Int).map { $0 > 0 && $0 <= 600 } == true, "\(status.stdout)")

            #expect(
                eventually(timeout: 180) {
                    (try? count(db, "SELECT count(*) FROM ingest_checkpoints WHERE source_file = 'slow.csv'")) == 1
                }, "never committed: \(serving.stderr())")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 594)
            let log = serving.stderr()
            // Every row costs 20 ms at least once: isolation lasts over the 5 s between its lines.
            #expect(log.contains("slow.csv: isolating 600 rows, "), "\(log)")
            #expect(log.contains(" left (probing and bisecting), "), "\(log)")
            #expect(log.contains("slow.csv: isolated 600 rows in "), "\(log)")
            metrics = try scrape(serving.url)
            #expect(metrics["ingest_rows_isolating"] == 0)
            #expect(metrics["ingest_rows_committing"] == 0)
            #expect((metrics["ingest_batches_isolated_total"] ?? 0) >= 1)
        }
    }
}
