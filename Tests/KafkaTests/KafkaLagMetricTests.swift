import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The Kafka lag gauge: `consume` reports each partition's watermarks in `watermarks` lines, and
/// `load` publishes high watermark − stored next offset on its metrics endpoint.
@Suite(.serialized) struct KafkaLagMetricTests {
    @Test func consumeReportsEachPartitionsHighWatermark() throws {
        try TestDatabase.with { database in
            let kafka = try MockKafka()
            defer { kafka.stop() }
            let gen = try runTool(
                Executables.url("gen"), ["--stdout", "--files", "1", "--rows-per-file", "120", "--invalid-rate", "0", "--seed", "4"])
            #expect(gen.status == 0, "\(gen.stderr)")
            try kafka.produce(gen.stdout)
            let result = try runTool(
                Executables.url("consume"),
                ["--brokers", kafka.bootstrap, "--topic", "events", "--group", "lag1", "--exit-at-end", "--db", database.conninfo]
                    + groupSettings,
                timeout: 60)
            #expect(result.status == 0, "\(result.stderr)")
            let objects = try result.lines.map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
            var messages: [Int: Int] = [:]
            for object in objects where object["kind"] as? String == "record" {
                messages[try #require(object["partition"] as? Int), default: 0] += 1
            }
            #expect(messages.values.reduce(0, +) == 120)
            // The last `watermarks` line of each partition: written once all was read, so its
            // high watermark is the partition's message count (offsets from 0, no gaps).
            var high: [Int: Int] = [:]
            var low: [Int: Int] = [:]
            for object in objects where object["kind"] as? String == "watermarks" {
                #expect(object["topic"] as? String == "events")
                let partition = try #require(object["partition"] as? Int)
                high[partition] = try #require(object["high_watermark"] as? Int)
                low[partition] = object["low_watermark"] as? Int
            }
            #expect(high.count == 3, "watermarks lines: \(high)")
            for partition in 0..<3 {
                #expect(high[partition] == messages[partition, default: 0], "partition \(partition): \(high) against \(messages)")
                #expect(low[partition] == 0)
            }
        }
    }

    /// Lines as `consume` writes them, fed by hand so the gauge can be caught with a lag that is
    /// not 0: the high watermark is ahead of what was committed.
    @Test func loadPublishesHighWatermarkMinusStoredOffset() throws {
        try TestDatabase.with { database in
            let folder = try temporaryFolder("kafka-lag")
            defer { try? FileManager.default.removeItem(at: folder) }
            let fifo = folder.appendingPathComponent("input").path
            #expect(mkfifo(fifo, 0o600) == 0)
            let log = folder.appendingPathComponent("load.log").path
            let bad = folder.appendingPathComponent("bad").path
            let script =
                "exec '\(Executables.url("validate").path)' < '\(fifo)' | '\(Executables.url("load").path)' --db '\(database.conninfo)' --bad-records '\(bad)' --metrics-listen 127.0.0.1:0"
            let load = try SpawnedProcess(["/bin/bash", "-c", script], stderr: log)
            defer {
                load.signal(SIGKILL)
                _ = load.wait(timeout: 10)
            }
            let input = try #require(FileHandle(forWritingAtPath: fifo))
            defer { try? input.close() }

            let gen = try runTool(
                Executables.url("gen"), ["--stdout", "--files", "1", "--rows-per-file", "25", "--invalid-rate", "0", "--seed", "9"])
            let values = try gen.lines.map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
            #expect(values.count == 25)
            func send(_ objects: [[String: Any]]) throws {
                var data = Data()
                for object in objects {
                    data.append(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
                    data.append(0x0A)
                }
                try input.write(contentsOf: data)
            }
            func records(_ range: Range<Int>) -> [[String: Any]] {
                range.map { offset in
                    // As consume writes a message: its own provenance, never a file's.
                    values[offset].filter { !["file", "line", "input_line"].contains($0.key) }
                        .merging(["kind": "record", "topic": "lagged", "partition": 0, "offset": offset]) { _, new in new }
                }
            }
            let watermarks: [String: Any] = [
                "kind": "watermarks", "topic": "lagged", "partition": 0, "low_watermark": 0, "high_watermark": 25,
            ]
            let stored = { try database.scalar("SELECT next_offset FROM ingest_kafka_offsets WHERE topic = 'lagged' AND partition = 0") }
            let series = #"ingest_kafka_consumer_lag{topic="lagged",partition="0"}"#

            try send([["kind": "assigned", "topic": "lagged", "partition": 0, "next_offset": NSNull()]] + records(0..<10))
            var url: String?
            #expect(
                eventually(timeout: 30) {
                    url = lagMetricsURL(in: (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""); return url != nil
                })
            let endpoint = try #require(url, "load never said where its metrics are")
            #expect(eventually(timeout: 60) { (try? stored()) == "10" }, "offsets 0-9 never committed: \(readLog(log))")
            // No watermarks line yet: no figure rather than a made-up one.
            #expect(try lagSamples(endpoint)[series] == nil)

            try send([watermarks])
            var samples: [String: Double] = [:]
            #expect(
                eventually(timeout: 30) {
                    samples = (try? lagSamples(endpoint)) ?? [:]
                    return samples[series] != nil
                }, "the gauge never appeared: \(readLog(log))")
            #expect(samples[series] == 15, "25 produced, 10 committed: \(samples)")

            try send(records(10..<25))
            #expect(eventually(timeout: 60) { (try? stored()) == "25" }, "offsets 10-24 never committed: \(readLog(log))")
            try send([watermarks])
            #expect(
                eventually(timeout: 30) {
                    samples = (try? lagSamples(endpoint)) ?? [:]
                    return samples[series] == 0
                }, "the lag never reached 0 after everything was committed: \(samples)")
        }
    }
}

private func readLog(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

/// `http://…/metrics` from load's "metrics at …" log line.
private func lagMetricsURL(in log: String) -> String? {
    guard let range = log.range(of: "metrics at http://") else { return nil }
    let rest = log[range.upperBound...]
    let end = rest.firstIndex(where: { $0 == "\n" || $0 == " " }) ?? rest.endIndex
    return "http://" + rest[..<end]
}

/// The samples of load's text exposition, `name{labels}` → value, fetched with curl.
private func lagSamples(_ url: String) throws -> [String: Double] {
    let r = try runTool(URL(fileURLWithPath: "/usr/bin/curl"), ["-sS", "--fail", "--max-time", "10", url], timeout: 30)
    guard r.status == 0 else { throw TestDatabaseError("GET \(url): curl exit \(r.status): \(r.stderr)") }
    var samples: [String: Double] = [:]
    for line in r.stdout.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
        samples[String(line[..<space])] = value
    }
    return samples
}
