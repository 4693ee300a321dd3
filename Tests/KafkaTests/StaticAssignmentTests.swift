import Foundation
import TestSupport
import Testing

/// `consume --partitions LIST`: the pipeline assigns itself partitions, joins no consumer group,
/// and starts each at the offset stored in PostgreSQL; two pipelines given the same partitions
/// fence each other in `load` and load every row once.
@Suite(.serialized) struct StaticAssignmentTests {
    @Test func allPartitionsLoadOnceAndTheNextRunStartsAtTheStoredOffsets() throws {
        try TestDatabase.with { database in
            let kafka = try MockKafka()
            defer { kafka.stop() }
            let folder = try temporaryFolder("kafka-static")
            defer { try? FileManager.default.removeItem(at: folder) }
            let manifest = folder.appendingPathComponent("manifest.ndjson")
            let bad = folder.appendingPathComponent("bad")

            try kafka.produce(try EventsTopic.generate(seed: 1, rows: 600, manifest: manifest))
            var result = try EventsTopic.pipeline(kafka, database, bad: bad, consume: ["--partitions", "all"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("partitions all of topic events (no group joined)"), "\(result.stderr)")
            #expect(result.stderr.contains("assigned events/0 from the beginning (no stored offset), events/1 from the beginning"))
            #expect(result.stderr.contains("done: 600 messages"))
            try Self.expectLoaded(database, truth: try EventsTopic.truth(manifest), messages: 600)

            // More messages: the next run starts every partition at its stored offset, so it
            // reads only the new ones.
            let stored = try Self.storedOffsets(database)
            #expect(stored.count == 3)
            try kafka.produce(try EventsTopic.generate(seed: 2, rows: 150, manifest: manifest))
            result = try EventsTopic.pipeline(kafka, database, bad: bad, consume: ["--partitions", "all"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("done: 150 messages"), "\(result.stderr)")
            let starts = stored.sorted { $0.key < $1.key }.map { "events/\($0.key) at \($0.value)" }.joined(separator: ", ")
            #expect(result.stderr.contains("assigned \(starts)"), "\(result.stderr)")
            try Self.expectLoaded(database, truth: try EventsTopic.truth(manifest), messages: 750)
        }
    }

    /// The job script passes `--partitions` on: `bin/pipeline --kafka … --partitions all`, from a
    /// copy of the scripts, runs consume with no group and loads every message once.
    @Test func binPipelineReadsTheGivenPartitionsWithoutAGroup() throws {
        try TestDatabase.with { database in
            let kafka = try MockKafka()
            defer { kafka.stop() }
            let folder = try temporaryFolder("kafka-pipeline-script")
            defer { try? FileManager.default.removeItem(at: folder) }
            let root = TestDatabase.packageRoot
            for item in ["bin", "sql", "contracts"] {
                try FileManager.default.copyItem(at: root.appendingPathComponent(item), to: folder.appendingPathComponent(item))
            }
            for dir in ["data/incoming", "data/processed", "data/bad_records", "logs"] {
                try FileManager.default.createDirectory(at: folder.appendingPathComponent(dir), withIntermediateDirectories: true)
            }
            let manifest = folder.appendingPathComponent("manifest.ndjson")
            try kafka.produce(try EventsTopic.generate(seed: 5, rows: 400, manifest: manifest))
            var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("INGEST_") }
            environment["PGDATABASE"] = database.name
            environment["INGEST_BIN_DIR"] = Executables.directory.path
            environment["INGEST_METRICS_LISTEN"] = "off"
            environment["INGEST_LOG_STDERR"] = "1"
            let result = try runTool(
                folder.appendingPathComponent("bin/pipeline"),
                ["--kafka", kafka.bootstrap, "--topic", "events", "--partitions", "all", "--exit-at-end"],
                environment: environment, currentDirectory: folder, timeout: 90)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("partitions all of topic events (no group joined)"), "\(result.stderr)")
            try Self.expectLoaded(database, truth: try EventsTopic.truth(manifest), messages: 400)
        }
    }

    @Test func aSubsetReadsOnlyItsPartitions() throws {
        try TestDatabase.with { database in
            let kafka = try MockKafka()
            defer { kafka.stop() }
            let folder = try temporaryFolder("kafka-subset")
            defer { try? FileManager.default.removeItem(at: folder) }
            try kafka.produce(try EventsTopic.generate(seed: 3, rows: 300, manifest: folder.appendingPathComponent("manifest.ndjson")))

            // --lag covers the selected partitions only.
            let all = try EventsTopic.objects(try EventsTopic.consume(kafka, database, ["--partitions", "all", "--lag"]))
            #expect(all.compactMap { $0["partition"] as? Int } == [0, 1, 2])
            let high = Dictionary(uniqueKeysWithValues: all.map { ($0["partition"] as! Int, $0["high_watermark"] as! Int) })
            #expect(high.values.reduce(0, +) == 300)
            #expect(high[1, default: 0] > 0, "the test needs messages in the partition left out")
            let lag = try EventsTopic.objects(try EventsTopic.consume(kafka, database, ["--partitions", "0,2", "--lag"]))
            #expect(lag.compactMap { $0["partition"] as? Int } == [0, 2])

            let result = try EventsTopic.consume(kafka, database, ["--partitions", "2,0", "--exit-at-end"])
            #expect(result.status == 0, "\(result.stderr)")
            let lines = try EventsTopic.objects(result)
            let kinds = lines.map { $0["kind"] as? String ?? "" }
            // The `assigned` lines of both partitions come first, before any message.
            #expect(Array(kinds.prefix(2)) == ["assigned", "assigned"])
            #expect(lines.prefix(2).compactMap { $0["partition"] as? Int } == [0, 2])
            let messages = lines.filter { $0["kind"] as? String == "record" || $0["kind"] as? String == "reject" }
            #expect(messages.count == high[0]! + high[2]!)
            #expect(Set(messages.compactMap { $0["partition"] as? Int }) == [0, 2])
        }
    }

    @Test func badSelectionsAreUsageErrors() throws {
        let consume = Executables.url("consume")
        let base = ["--brokers", "127.0.0.1:9", "--topic", "events"]
        let neither = try runTool(consume, base)
        #expect(neither.status == 64)
        #expect(neither.stderr.contains("give --group ID (join a consumer group) or --partitions LIST"), "\(neither.stderr)")
        let both = try runTool(consume, base + ["--group", "g", "--partitions", "all"])
        #expect(both.status == 64)
        #expect(both.stderr.contains("--group and --partitions cannot be combined"), "\(both.stderr)")
        for list in ["", "0,", "a", "1-", "3-1", "-2", "+1", "1 ,2", "all,1"] {
            let bad = try runTool(consume, base + ["--partitions=\(list)"])
            #expect(bad.status == 64, "--partitions '\(list)'")
            // An empty value is swift-argument-parser's "Missing value for '--partitions <list>'".
            #expect(bad.stderr.contains("Error: --partitions \(list): ") || list.isEmpty, "--partitions '\(list)': \(bad.stderr)")
        }

        // A partition the topic lacks is known only from the brokers; still a usage error, found
        // before any database is asked (none answers here).
        let kafka = try MockKafka()
        defer { kafka.stop() }
        for extra in [["--exit-at-end"], ["--lag"]] {
            let args = ["--brokers", kafka.bootstrap, "--topic", "events", "--partitions", "1,3-4", "--db", "host=127.0.0.1 port=9"]
            let missing = try runTool(consume, args + extra, timeout: 60)
            #expect(missing.status == 64, "\(missing.stderr)")
            #expect(
                missing.stderr.contains("Error: --partitions 1,3-4: topic events has no partition 3-4 (its 3 partitions are 0-2)"),
                "\(missing.stderr)")
        }
    }

    @Test func twoPipelinesGivenTheSamePartitionsLoadEveryRowOnce() throws {
        try TestDatabase.with { database in
            let kafka = try MockKafka()
            defer { kafka.stop() }
            let folder = try temporaryFolder("kafka-static-twice")
            defer { try? FileManager.default.removeItem(at: folder) }
            let manifest = folder.appendingPathComponent("manifest.ndjson")
            let bad = folder.appendingPathComponent("bad")
            let pipelines = try ["a", "b"].map { name in
                try KafkaPipeline(
                    name: name, folder: folder, brokers: kafka.bootstrap, partitions: "all", conninfo: database.conninfo, bad: bad)
            }
            // Both start every partition from the beginning before a message exists: both read
            // every message, and for each partition the second commit is fenced (load learns of
            // the other's commits only so).
            let bothAssigned = eventually(timeout: 30) { pipelines.allSatisfy { $0.log("consume").contains("assigned events/0 ") } }
            #expect(bothAssigned, "\(pipelines.map { $0.log("consume") })")
            try kafka.produce(try EventsTopic.generate(seed: 4, rows: 3_000, manifest: manifest))
            let loads = { pipelines.map { $0.log("load") }.joined(separator: "\n") }
            let allStored = try eventually(timeout: 120) {
                try database.scalar("SELECT coalesce(sum(next_offset), 0) FROM ingest_kafka_offsets") == "3000"
            }
            #expect(allStored, "\(loads())")
            #expect(eventually(timeout: 60) { loads().contains("fenced") }, "\(loads())")
            for pipeline in pipelines { pipeline.signal("consume", SIGINT) }
            #expect(pipelines.allSatisfy { $0.waitForExit(timeout: 60) })
            try Self.expectLoaded(database, truth: try EventsTopic.truth(manifest), messages: 3_000)
        }
    }

    @Test func offsetsAreCopiedToKafkaOnlyUnderAGroupTheUserNamed() throws {
        try TestDatabase.with { database in
            let kafka = try MockKafka()
            defer { kafka.stop() }
            let folder = try temporaryFolder("kafka-static-commit")
            defer { try? FileManager.default.removeItem(at: folder) }
            let bad = folder.appendingPathComponent("bad")
            try kafka.produce(try EventsTopic.generate(seed: 5, rows: 300, manifest: folder.appendingPathComponent("manifest.ndjson")))
            // Runs a pipeline until every offset is stored and a few copy intervals have passed.
            func run(_ name: String, _ extra: [String]) throws {
                let pipeline = try KafkaPipeline(
                    name: name, folder: folder, brokers: kafka.bootstrap, partitions: "all", conninfo: database.conninfo, bad: bad,
                    extraConsume: ["--kafka-commit-interval", "100ms"] + extra)
                let stored = try eventually(timeout: 60) {
                    try database.scalar("SELECT sum(next_offset) FROM ingest_kafka_offsets") == "300"
                }
                #expect(stored, "\(pipeline.log("load"))")
                usleep(600_000)
                pipeline.signal("consume", SIGINT)
                #expect(pipeline.waitForExit(timeout: 60))
            }
            try run("internal", [])
            try run("named", ["-X", "group.id=lag-tools"])
            // A group reading from its committed offsets (else from the beginning) gets nothing
            // when they are at the end: the named group's are; the internal one has none.
            #expect(try Self.messagesAfterCommitted(kafka, group: "lag-tools") == 0)
            #expect(try Self.messagesAfterCommitted(kafka, group: "ingest-consume-unjoined") == 300)
        }
    }

    // MARK: - Helpers

    /// How many messages a member of `group` reads, from the group's committed offsets (kcat).
    static func messagesAfterCommitted(_ kafka: MockKafka, group: String) throws -> Int {
        let result = try runTool(
            URL(fileURLWithPath: "/usr/bin/env"),
            ["kcat", "-b", kafka.bootstrap, "-G", group, "-e", "-q", "-X", "auto.offset.reset=earliest", "events"], timeout: 60)
        #expect(result.status == 0, "\(result.stderr)")
        return result.lines.filter { !$0.isEmpty }.count
    }

    /// Every valid event once, every invalid one a dead letter, the stored offsets past every message.
    static func expectLoaded(_ database: TestDatabase, truth: (valid: Set<String>, invalid: Int), messages: Int) throws {
        #expect(try database.scalar("SELECT count(*) FROM ecommerce_events") == String(truth.valid.count))
        #expect(Set(try database.query("SELECT event_id::text FROM ecommerce_events").compactMap { $0[0] }) == truth.valid)
        #expect(try database.scalar("SELECT count(*) FROM ecommerce_bad_records") == String(truth.invalid))
        #expect(try database.scalar("SELECT sum(next_offset) FROM ingest_kafka_offsets") == String(messages))
    }

    static func storedOffsets(_ database: TestDatabase) throws -> [Int: Int] {
        var offsets: [Int: Int] = [:]
        for row in try database.query("SELECT partition, next_offset FROM ingest_kafka_offsets WHERE topic = 'events'") {
            if let p = row[0].flatMap({ Int($0) }), let next = row[1].flatMap({ Int($0) }) { offsets[p] = next }
        }
        return offsets
    }

}
