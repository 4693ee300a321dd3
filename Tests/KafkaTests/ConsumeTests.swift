import Foundation
import TestSupport
import Testing

/// The real `consume` against librdkafka's mock cluster, alone and as `consume | validate | load`.
@Suite(.serialized) struct ConsumeTests {
    @Test func everyMessageBecomesALineWithProvenanceAndNonObjectsBecomeRejects() throws {
        try TestDatabase.with { database in
            let kafka = try MockKafka()
            defer { kafka.stop() }
            try kafka.produce(
                """
                {"event_id":"6f1c5b7e-2b1a-4c1e-9f0a-3d2e1c0b9a87","user_id":"42","product_id":"7","event_type":"view","price":"","event_timestamp":"2024-01-30 10:15:23","kind":"eof","offset":99}
                not json
                [1,2]
                {"event_id":"0e5a3f6c-8d2b-4f1a-9c3e-7b6d5a4f3e21","user_id":"43","product_id":"8","event_type":"purchase","price":"12.50","event_timestamp":"2024-01-30 10:15:24"}

                """)
            let result = try runTool(
                Executables.url("consume"),
                ["--brokers", kafka.bootstrap, "--topic", "events", "--group", "g1", "--exit-at-end", "--db", database.conninfo]
                    + groupSettings,
                timeout: 60)
            #expect(result.status == 0, "\(result.stderr)")
            let objects = try result.lines.map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
            let assigned = objects.filter { $0["kind"] as? String == "assigned" }
            #expect(assigned.count == 3)
            #expect(assigned.allSatisfy { $0["next_offset"] is NSNull && $0["topic"] as? String == "events" })
            let records = objects.filter { $0["kind"] as? String == "record" }
            #expect(records.count == 2)
            for record in records {
                #expect(record["topic"] as? String == "events")
                #expect((record["partition"] as? Int).map { (0..<3).contains($0) } == true)
                #expect(record["offset"] is Int)
                #expect(record["event_id"] is String)
            }
            // The value's own "kind" and "offset" never replace the message's provenance.
            let first = try #require(records.first { $0["user_id"] as? String == "42" })
            #expect(first["offset"] as? Int != 99)
            let rejects = objects.filter { $0["kind"] as? String == "reject" }
            #expect(Set(rejects.compactMap { $0["raw"] as? String }) == ["not json", "[1,2]"])
            for reject in rejects {
                let reasons = try #require(reject["reasons"] as? [[String: Any]])
                #expect((reasons.first?["reason"] as? String)?.hasPrefix("message value is not a JSON object") == true)
                #expect(reject["offset"] is Int && reject["partition"] is Int)
            }
            // Every message exactly once, each with its own (partition, offset).
            let positions = (records + rejects).map { "\($0["partition"]!)/\($0["offset"]!)" }
            #expect(Set(positions).count == 4)
            #expect(result.stderr.contains("assigned events/0 from the beginning"))
        }
    }

    @Test func pipelineLoadsEachMessageOnceAndResumesFromStoredOffsets() throws {
        try TestDatabase.with { database in
            let kafka = try MockKafka()
            defer { kafka.stop() }
            let folder = try temporaryFolder("kafka-resume")
            defer { try? FileManager.default.removeItem(at: folder) }
            let manifest = folder.appendingPathComponent("manifest.ndjson")
            let bad = folder.appendingPathComponent("bad")

            func generate(seed: Int, rows: Int) throws -> String { try EventsTopic.generate(seed: seed, rows: rows, manifest: manifest) }
            func runPipeline() throws -> ToolResult {
                try EventsTopic.pipeline(kafka, database, bad: bad, consume: ["--group", "loaders"] + groupSettings)
            }
            func truth() throws -> (valid: Set<String>, invalid: Int) { try EventsTopic.truth(manifest) }

            try kafka.produce(try generate(seed: 1, rows: 300) + "not json\n")
            var result = try runPipeline()
            #expect(result.status == 0, "\(result.stderr)")
            var expected = try truth()
            #expect(Set(try database.query("SELECT event_id::text FROM ecommerce_events").compactMap { $0[0] }) == expected.valid)
            #expect(try database.scalar("SELECT count(*) FROM ecommerce_bad_records") == String(expected.invalid + 1))
            #expect(try database.scalar("SELECT sum(next_offset) FROM ingest_kafka_offsets") == "301")
            let raw = try database.scalar("SELECT raw FROM ecommerce_bad_records WHERE raw LIKE '%not json%'") ?? ""
            #expect(raw.contains(#""topic":"events""#) && raw.contains(#""offset":"#))
            // The folder holds what the table holds, line for line: one file per batch with
            // rejects, for all its partitions, not one per partition.
            let deadLetterFiles = try FileManager.default.contentsOfDirectory(atPath: bad.path).filter { !$0.hasPrefix(".") }
            #expect(!deadLetterFiles.isEmpty && deadLetterFiles.allSatisfy { $0.hasPrefix("kafka_events_") && $0.hasSuffix(".ndjson") })
            let folderLines = try deadLetterFiles.flatMap { name in
                try String(contentsOf: bad.appendingPathComponent(name), encoding: .utf8).split(separator: "\n").map(String.init)
            }
            #expect(folderLines.sorted() == (try database.query("SELECT raw FROM ecommerce_bad_records").compactMap { $0[0] }).sorted())
            // load logs `Valid: 290, Invalid: 11; …` per batch.
            let batchesWithRejects = result.stderr.split(separator: "\n").filter { $0.contains("Valid: ") && !$0.contains("Invalid: 0;") }
            #expect(deadLetterFiles.count == batchesWithRejects.count, "\(deadLetterFiles) for \(batchesWithRejects)")
            let partitionsWithRejects = try database.scalar("SELECT count(DISTINCT raw::jsonb->>'partition') FROM ecommerce_bad_records")
            // Messages go to random partitions: 10 rejects miss one of the 3 partitions 5 % of
            // the time, all but one only ~0.005 %.
            #expect((partitionsWithRejects.flatMap { Int($0) } ?? 0) >= 2, "the test needs rejects in several partitions")

            // Again with nothing new: every partition starts at its stored offset; nothing changes.
            result = try runPipeline()
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try database.scalar("SELECT count(*) FROM ecommerce_events") == String(expected.valid.count))
            #expect(try database.scalar("SELECT count(*) FROM ecommerce_bad_records") == String(expected.invalid + 1))

            // More messages: only they load.
            try kafka.produce(try generate(seed: 2, rows: 100))
            result = try runPipeline()
            #expect(result.status == 0, "\(result.stderr)")
            expected = try truth()
            #expect(Set(try database.query("SELECT event_id::text FROM ecommerce_events").compactMap { $0[0] }) == expected.valid)
            #expect(try database.scalar("SELECT count(*) FROM ecommerce_bad_records") == String(expected.invalid + 1))
            #expect(try database.scalar("SELECT sum(next_offset) FROM ingest_kafka_offsets") == "401")

            // --lag: stored offsets against the high watermarks, all caught up.
            let lag = try runTool(
                Executables.url("consume"),
                ["--brokers", kafka.bootstrap, "--topic", "events", "--group", "loaders", "--lag", "--db", database.conninfo])
            #expect(lag.status == 0, "\(lag.stderr)")
            let partitions = try lag.lines.map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
            #expect(partitions.count == 3)
            #expect(partitions.allSatisfy { $0["lag"] as? Int == 0 })
            #expect(partitions.compactMap { $0["high_watermark"] as? Int }.reduce(0, +) == 401)
        }
    }

    @Test func usageErrorsExit64AndHelpIsAManual() throws {
        let missing = try runTool(Executables.url("consume"), ["--topic", "events"])
        #expect(missing.status == 64)
        #expect(missing.stderr.contains("--brokers"))
        let badProperty = try runTool(Executables.url("consume"), ["--brokers", "b:1", "--topic", "t", "--group", "g", "-X", "nonsense"])
        #expect(badProperty.status == 64)
        let help = try runTool(Executables.url("consume"), ["--help"])
        #expect(help.status == 0)
        #expect(help.stdout.contains("ingest_kafka_offsets"))
        #expect(help.stdout.contains("--group"))
        #expect(help.stdout.contains("--partitions <list>"))
    }
}
