import Foundation
import Ingest
import TestSupport
import Testing

/// `load` fed by the test (``FedLoad``, shared with the Kafka tests), under the name these
/// tests know it by.
typealias StreamingLoad = FedLoad

extension FedLoad {
    /// The built `load` with `arguments`; `launcher` runs it through another command (`ip netns exec NAME`).
    convenience init(arguments: [String], environment: [String: String]? = nil, launcher: [String] = []) throws {
        try self.init(executable: Executables.url("load"), arguments: arguments, environment: environment, launcher: launcher)
    }
}

@Suite(.serialized) struct LoadFaultTests {
    /// kill -9 of load at several instants while batches are being written and committed; then
    /// a restart over the same input: every valid row once, every reject once, every checkpoint once.
    @Test func killMinusNineAtAnyInstantThenRestartLosesAndDoublesNothing() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            var lines: [String] = []
            let files = 8
            for i in 0..<files { lines += try f.file("batch_\(i).csv", valid: 4_000, rejects: 40) }
            let allLines = lines
            var kills = 0
            for delay in [30_000, 120_000, 250_000, 500_000] as [UInt32] {
                let run = try StreamingLoad(arguments: f.arguments(db, ["--batch-rows", "5000", "--keep"]))
                DispatchQueue.global().async { try? run.send(allLines) }
                usleep(delay)
                run.kill9()
                kills += 1
            }
            let final = try StreamingLoad(arguments: f.arguments(db, ["--batch-rows", "5000", "--keep"]))
            try final.send(lines)
            #expect(final.finish() == 0, "\(final.stderr.text())")
            #expect(kills == 4)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == files * 4_000)
            #expect(
                try count(
                    db, "SELECT count(DISTINCT event_id) FROM ecommerce_events WHERE event_id = ANY($1::uuid[])", [arrayText(f.validIDs)])
                    == files * 4_000)
            #expect(try count(db, "SELECT count(*) FROM ingest_checkpoints") == files)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_bad_records") == files * 40)
            for i in 0..<files {
                #expect(try f.deadLetterLines("batch_\(i).csv").count == 40)
            }
        }
    }

    /// The server goes away mid-stream (fast and immediate shutdown) and comes back: load retries,
    /// logs host:port and the reason, and commits everything once.
    @Test(arguments: ["fast", "immediate"])
    func serverStoppedMidStreamAndRestarted(mode: String) throws {
        let cluster = try PrivateCluster()
        let f = try LoadFixture()
        let args = ["--incoming", f.incoming.path, "--bad-records", f.bad.path, "--archive", f.processed.path]
        let run = try StreamingLoad(arguments: args, environment: cluster.processEnvironment())
        try run.send(try f.file("first.csv", valid: 500, rejects: 5))
        #expect(try eventually { try cluster.psql("SELECT count(*) FROM ingest_checkpoints") == "1" })
        try cluster.stop(mode: mode)
        try run.send(try f.file("second.csv", valid: 500, rejects: 5))
        usleep(1_500_000)
        try cluster.start()
        #expect(try eventually { try cluster.psql("SELECT count(*) FROM ingest_checkpoints") == "2" })
        try run.send(try f.file("third.csv", valid: 500, rejects: 5))
        let status = run.finish()
        let log = run.stderr.text()
        #expect(status == 0, "\(log)")
        #expect(log.contains("retrying"))
        #expect(log.contains(cluster.environment["PGPORT"] ?? "?"))
        #expect(try cluster.psql("SELECT count(*) FROM ecommerce_events") == "1500")
        #expect(try cluster.psql("SELECT count(*) FROM ecommerce_bad_records") == "15")
        #expect(try cluster.psql("SELECT count(*) FROM ingest_checkpoints") == "3")
    }
}

func arrayText(_ values: [String]) -> String { "{" + values.joined(separator: ",") + "}" }
