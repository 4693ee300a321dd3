import Foundation
import Ingest
import TestSupport
import Testing

/// The promise for Kafka, checked against ground truth: two `consume | validate | load`
/// pipelines in one consumer group share a 3-partition topic on librdkafka's mock cluster while
/// messages keep arriving (6 partitions); at random instants a random stage of a random pipeline (or the whole
/// pipeline) is killed with SIGKILL and restarted, or the brokers go down for a while. At the
/// end every valid event is in the table exactly once and every invalid message is exactly one
/// dead letter.
///
/// 20,000 messages by default; KAFKA_TORTURE_MESSAGES=100000 for the full run (bin/torture
/// --kafka), KAFKA_TORTURE_SECONDS for how long faults go on, KAFKA_TORTURE_SEED to replay.
@Suite(.serialized) struct KafkaTortureTests {
    @Test func twoPipelinesInOneGroupSurviveKillsWithoutLossOrDoubles() throws {
        try torture()
    }

    /// The same, for the wide example contract (17 columns of every type): consume maps the
    /// message keys through it, every stage reads it from INGEST_CONTRACT.
    @Test func aContractOfAnotherShapeSurvivesTheSameKills() throws {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        let path = parts.joined(separator: "/") + "/contracts/examples/shipments.yaml"
        try torture(contractPath: path, defaultMessages: 6_000, defaultSeconds: 15)
    }

    func torture(contractPath: String? = nil, defaultMessages: Int = 20_000, defaultSeconds: Double = 30) throws {
        let env = ProcessInfo.processInfo.environment
        let messages = max(1_000, Int(env["KAFKA_TORTURE_MESSAGES"] ?? "") ?? defaultMessages)
        let seconds = Double(env["KAFKA_TORTURE_SECONDS"] ?? "") ?? defaultSeconds
        let contract = try contractPath.map { try Contract.load(path: $0) } ?? Contract.ecommerceEvents
        let keyColumn = contract.columns[contract.key[0]].name
        var stageEnvironment = env
        if let contractPath { stageEnvironment["INGEST_CONTRACT"] = contractPath }
        let seed = UInt64(env["KAFKA_TORTURE_SEED"] ?? "") ?? UInt64.random(in: 1...999_999)
        progress("kafka torture: seed \(seed), \(messages) messages, faults for \(Int(seconds)) s")
        var rng = SplitMix64(seed: seed)
        let started = Date()

        try TestDatabase.with { database in
            // 6 partitions: the mock keeps at most ~5 MB per partition (older messages are deleted,
            // as retention would), and 100,000 messages are ~21 MB.
            let kafka = try MockKafka(partitions: 6)
            defer { kafka.stop() }
            let folder = try temporaryFolder("kafka-torture-\(seed)")
            defer { try? FileManager.default.removeItem(at: folder) }
            let bad = folder.appendingPathComponent("bad")
            let manifest = folder.appendingPathComponent("manifest.ndjson")
            if contractPath != nil { try database.connect().executeScript(contractTablesSQL(contract)) }

            // The messages, in four chunks produced while the pipelines run.
            let rowsPerFile = 1_000
            let generated = try runTool(
                Executables.url("gen"),
                [
                    "--stdout", "--interval", "0", "--files", String(messages / rowsPerFile), "--rows-per-file", String(rowsPerFile),
                    "--invalid-rate", "0.03",
                    "--seed", String(seed), "--manifest", manifest.path,
                ], environment: stageEnvironment, timeout: 300)
            #expect(generated.status == 0)
            let lines = generated.lines
            let total = lines.count
            let chunkSize = (total + 3) / 4
            var chunks = stride(from: 0, to: total, by: chunkSize).map {
                lines[$0..<min($0 + chunkSize, total)].joined(separator: "\n") + "\n"
            }
            try kafka.produce(chunks.removeFirst())
            progress("kafka torture: generated and produced the first chunk after \(Int(Date().timeIntervalSince(started))) s")

            func start(_ name: String) throws -> KafkaPipeline {
                try KafkaPipeline(
                    name: name, folder: folder, brokers: kafka.bootstrap, group: "torture", conninfo: database.conninfo, bad: bad,
                    environment: stageEnvironment)
            }
            var pipelines = [try start("a"), try start("b")]
            var kills = 0
            var brokerOutages = 0
            var woundDown = 0
            var forced = 0
            var events: [String] = []
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline || !chunks.isEmpty {
                usleep(UInt32(1_000_000 + rng.next() % 2_000_000))
                if !chunks.isEmpty { try kafka.produce(chunks.removeFirst()) }
                let i = Int(rng.next() % 2)
                switch rng.next() % 10 {
                case 0:
                    kafka.signal(SIGUSR1)
                    usleep(UInt32(500_000 + rng.next() % 1_500_000))
                    kafka.signal(SIGUSR2)
                    brokerOutages += 1
                    events.append("brokers down")
                    continue
                case 1, 2:
                    for stage in KafkaPipeline.stages { pipelines[i].signal(stage, SIGKILL) }
                    events.append("kill -9 \(pipelines[i].name): all")
                default:
                    let stage = KafkaPipeline.stages[Int(rng.next() % 3)]
                    pipelines[i].signal(stage, SIGKILL)
                    events.append("kill -9 \(pipelines[i].name): \(stage)")
                }
                kills += 1
                // The surviving stages see EOF or EPIPE and exit; a validate idle between a dead
                // load and an idle consume waits for its next write, so it is killed after a while.
                if pipelines[i].waitForExit(timeout: 8) { woundDown += 1 } else { forced += 1 }
                pipelines[i] = try start(pipelines[i].name)
            }

            progress("kafka torture: faults over after \(Int(Date().timeIntervalSince(started))) s")
            // Drain: every message loaded (the stored offsets sum to the messages produced).
            let drained = eventually(timeout: 180) {
                (try? database.scalar("SELECT coalesce(sum(next_offset), 0) FROM ingest_kafka_offsets")) == String(total)
            }
            #expect(
                drained,
                "stored offsets: \((try? database.query("SELECT partition, next_offset FROM ingest_kafka_offsets ORDER BY 1")) ?? []); load log b:\n\(pipelines[1].log("load").suffix(2000))"
            )
            progress("kafka torture: drained after \(Int(Date().timeIntervalSince(started))) s")
            // Stop the Ctrl+C way: consume leaves the group, the rest drains and exits 0.
            for p in pipelines { p.signal("consume", SIGTERM) }
            for p in pipelines {
                #expect(p.waitForExit(timeout: 30))
                #expect(p.shell.exitCode == 0, "\(p.name): \(p.log("consume").suffix(1500))")
            }

            // Ground truth from gen's manifest.
            var validIDs: Set<String> = []
            var invalidTotal = 0
            for line in try String(contentsOf: manifest, encoding: .utf8).split(separator: "\n") {
                let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                // The e-commerce generator lists `valid_event_ids`; a contract's, `valid_keys`.
                validIDs.formUnion(try #require((object["valid_event_ids"] ?? object["valid_keys"]) as? [String]).map { $0.lowercased() })
                invalidTotal += try #require(object["invalid"] as? Int)
            }
            let loadedIDs = try database.query("SELECT \(keyColumn)::text FROM \(contract.table)").compactMap { $0[0] }
            let loadedSet = Set(loadedIDs)
            let lost = validIDs.subtracting(loadedSet).count
            let unexpected = loadedSet.subtracting(validIDs).count
            let doubled = loadedIDs.count - loadedSet.count
            let deadLetters = Int(try database.scalar("SELECT count(*) FROM \(contract.deadLetterTable)") ?? "") ?? -1
            let deadLettersDoubled =
                Int(
                    try database.scalar(
                        """
                        SELECT count(*) FROM (SELECT raw::jsonb->>'partition', raw::jsonb->>'offset' FROM \(contract.deadLetterTable)
                        GROUP BY 1, 2 HAVING count(*) > 1) d
                        """) ?? "") ?? -1
            let checkpointRows = Int(try database.scalar("SELECT coalesce(sum(rows_loaded), 0) FROM ingest_checkpoints") ?? "") ?? -1
            let fenced = pipelines.map { $0.log("load").components(separatedBy: "fenced:").count - 1 }.reduce(0, +)
            progress(
                """
                kafka torture: seed \(seed): \(total) messages (\(invalidTotal) invalid), \(kills) kills (\(woundDown) pipelines wound down by \
                themselves, \(forced) finished off), \(brokerOutages) broker outages, \(fenced) fenced batches; \(lost) lost, \
                \(doubled) rows doubled, \(deadLettersDoubled) dead letters doubled, \(unexpected) unexpected; \
                \(Int(Date().timeIntervalSince(started))) s
                kafka torture: events: \(events.joined(separator: ", "))
                """)
            if lost > 0 || doubled > 0 {
                // Where the lost messages were: contiguous offset ranges per partition.
                let dump = try runTool(
                    URL(fileURLWithPath: "/usr/bin/env"),
                    ["kcat", "-C", "-b", kafka.bootstrap, "-t", "events", "-o", "beginning", "-e", "-q", "-f", "%p %o %s\\n"], timeout: 120)
                var position: [String: (Int, Int)] = [:]
                for line in dump.lines {
                    let parts = line.split(separator: " ", maxSplits: 2)
                    guard parts.count == 3, let p = Int(parts[0]), let o = Int(parts[1]),
                        let object = try? JSONSerialization.jsonObject(with: Data(parts[2].utf8)) as? [String: Any],
                        let id = (object["event_id"] as? String)?.lowercased()
                    else { continue }
                    position[id] = (p, o)
                }
                var missing: [Int: [Int]] = [:]
                for id in validIDs.subtracting(loadedSet) { if let (p, o) = position[id] { missing[p, default: []].append(o) } }
                for (p, offsets) in missing.sorted(by: { $0.key < $1.key }) {
                    var ranges: [String] = []
                    var start = -1
                    var previous = -2
                    for o in offsets.sorted() {
                        if o != previous + 1 {
                            if start >= 0 { ranges.append("\(start)-\(previous)") }
                            start = o
                        }
                        previous = o
                    }
                    ranges.append("\(start)-\(previous)")
                    progress("kafka torture: partition \(p) lost valid messages at offsets \(ranges.prefix(12).joined(separator: ", "))")
                }
                for p in pipelines {
                    for stage in ["consume", "load"] {
                        let interesting = p.log(stage).split(separator: "\n").filter {
                            $0.contains("assigned") || $0.contains("revoked") || $0.contains("fenced") || $0.contains("dropping")
                                || $0.contains("before any") || $0.contains("ERROR") || $0.contains("WARNING")
                                || $0.contains("not delivered")
                        }
                        progress("kafka torture: \(p.name)-\(stage):\n" + interesting.suffix(60).joined(separator: "\n"))
                    }
                }
            }
            #expect(lost == 0)
            #expect(doubled == 0)
            #expect(unexpected == 0)
            #expect(loadedIDs.count == validIDs.count)
            #expect(deadLetters == invalidTotal)
            #expect(deadLettersDoubled == 0)
            #expect(checkpointRows == validIDs.count)
            #expect(kills > 0)
        }
    }
}
