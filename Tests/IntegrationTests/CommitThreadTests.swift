import Foundation
import Ingest
import TestSupport
import Testing

/// What a commit thread holds is never lost nor written twice (issue 22, item 2).
@Suite(.serialized) struct CommitThreadTests {
    /// Records without provenance (`jq … | validate | load`): no file to read again, so load's
    /// memory is their only copy.
    static func looseRecords(_ count: Int, from: Int = 0) -> (lines: [String], ids: [String]) {
        let ids = (0..<count).map { _ in UUID().uuidString.lowercased() }
        let lines = ids.enumerated().map { i, id in
            #"{"kind":"record","line":\#(from + i + 1),"event_id":"\#(id)","user_id":\#(from + i + 1),"product_id":7,"event_type":"view","price":"3.25","event_timestamp":"2024-01-30T10:15:23.123Z"}"#
        }
        return (lines, ids)
    }

    /// The first Ctrl+C arrives while the batch in flight cannot reach the server: the commit
    /// thread keeps it (it used to throw "interrupted" and drop it when the reading thread held
    /// nothing more), and commits it once the server is back; load exits 0.
    @Test func ctrlCDuringAnOutageLosesNoRecordWithoutProvenance() throws {
        let cluster = try PrivateCluster()
        let f = try LoadFixture()
        let args = ["--incoming", f.incoming.path, "--bad-records", f.bad.path, "--archive", f.processed.path, "--max-delay", "200ms"]
        let run = try StreamingLoad(arguments: args, environment: cluster.processEnvironment())
        let early = Self.looseRecords(100)
        try run.send(early.lines)
        #expect(try eventually(timeout: 60) { try cluster.psql("SELECT count(*) FROM ecommerce_events") == "100" })

        try cluster.stop(mode: "fast")
        let late = Self.looseRecords(2_000, from: 100)
        do {
            try run.send(late.lines)
        } catch {
            Issue.record("load stopped reading (\(error)): \(run.stderr.text(timeout: 10))")
            return
        }
        let retrying = eventually(timeout: 60) { run.stderr.snapshot().contains("retrying") }
        #expect(retrying, "\(run.stderr.snapshot())")
        kill(run.process.processIdentifier, SIGINT)
        // Let the commit thread go round its retry loop with the signal received.
        let before = run.stderr.snapshot().components(separatedBy: "retrying").count
        #expect(eventually(timeout: 60) { run.stderr.snapshot().components(separatedBy: "retrying").count > before + 1 })
        #expect(run.process.isRunning, "load stopped holding a batch: \(run.stderr.snapshot())")

        try cluster.start()
        let status = run.finish(timeout: 120)
        let log = run.stderr.text()
        #expect(status == 0, "\(log)")
        #expect(!log.contains("interrupted while waiting"), "\(log)")
        #expect(try cluster.psql("SELECT count(*), count(DISTINCT event_id) FROM ecommerce_events") == "2100|2100")
    }

    /// A batch of records and rejects without provenance whose first attempt fails after its
    /// dead-letter file was written: the retry rewrites that file (its name is the batch's, not
    /// the attempt's clock), so one file holds the rejects, once.
    @Test func aRetriedBatchWritesOneDeadLetterFile() throws {
        try TestDatabase.with { db in
            // Fails the first attempt's dead-letter COPY, a second and more after the file was
            // written (the old name had the wall-clock second in it), with a retryable error.
            try db.connect().executeScript(
                """
                CREATE SEQUENCE fail_once;
                CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN IF nextval('fail_once') = 1 THEN PERFORM pg_sleep(1.2);
                  RAISE EXCEPTION 'provoked by the test' USING ERRCODE = '40001'; END IF; RETURN NEW; END $$;
                CREATE TRIGGER fail_once BEFORE INSERT ON ecommerce_bad_records FOR EACH ROW EXECUTE FUNCTION fail_once();
                """)
            let f = try LoadFixture()
            var lines = Self.looseRecords(50).lines
            for i in 0..<7 {
                lines.append(
                    #"{"kind":"reject","line":\#(100 + i),"raw":"x,y","reasons":[{"field":null,"reason":"expected 6 fields, found 2"}]}"#)
            }
            let result = try runTool(Executables.url("load"), f.arguments(db), stdin: stdinData(lines))
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("retrying"), "the test's fault did not happen: \(result.stderr)")
            let files = try FileManager.default.contentsOfDirectory(atPath: f.bad.path).filter { $0.hasPrefix("stdin_") }
            #expect(files.count == 1, "\(files)")
            let text = try String(contentsOf: f.bad.appendingPathComponent(files.first ?? "none"), encoding: .utf8)
            #expect(text.split(separator: "\n").count == 7)
            #expect(try db.query("SELECT count(*) FROM ecommerce_bad_records") == [["7"]])
            #expect(try db.query("SELECT count(*) FROM ecommerce_events") == [["50"]])
        }
    }
}
