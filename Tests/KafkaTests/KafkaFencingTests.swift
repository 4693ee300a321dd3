import Foundation
import TestSupport
import Testing

/// `load`'s side of exactly once for Kafka, fed the lines `consume` writes: the stored offset
/// moves only from where a batch's lines continue, so a stale pipeline is fenced; offsets
/// already loaded are skipped; re-deliveries after a reassignment are dropped.
@Suite struct KafkaFencingTests {
    /// An event for partition 0 at `offset`; its id is derived from the offset.
    static func record(_ offset: Int, partition: Int = 0, price: String = "") -> String {
        let id = String(format: "6f1c5b7e-2b1a-4c1e-9f0a-%012d", offset + 1_000 * partition)
        let type = price.isEmpty ? "view" : "purchase"
        return
            #"{"kind":"record","topic":"events","partition":\#(partition),"offset":\#(offset),"event_id":"\#(id)","user_id":"1","product_id":"2","event_type":"\#(type)","price":"\#(price)","event_timestamp":"2024-01-30 10:15:23"}"#
    }

    static func assigned(_ next: Int?, partition: Int = 0) -> String {
        #"{"kind":"assigned","topic":"events","partition":\#(partition),"next_offset":\#(next.map(String.init) ?? "null")}"#
    }

    /// `validate | load` on `lines`, as two real processes.
    static func load(_ lines: [String], _ database: TestDatabase, bad: URL) throws -> ToolResult {
        let result = try runTool(
            URL(fileURLWithPath: "/bin/sh"),
            [
                "-c",
                "'\(Executables.url("validate").path)' | '\(Executables.url("load").path)' --db '\(database.conninfo)' --bad-records '\(bad.path)'",
            ],
            stdin: Data((lines.joined(separator: "\n") + "\n").utf8))
        #expect(result.status == 0, "\(result.stderr)")
        return result
    }

    @Test func aStalePipelineIsFencedAndNothingLoadsTwice() throws {
        try TestDatabase.with { database in
            let bad = try temporaryFolder("kafka-fence")
            defer { try? FileManager.default.removeItem(at: bad) }
            func stored() throws -> String? {
                try database.scalar("SELECT next_offset FROM ingest_kafka_offsets WHERE topic = 'events' AND partition = 0")
            }
            func rows() throws -> String? { try database.scalar("SELECT count(*) FROM ecommerce_events") }
            func deadLetters() throws -> String? { try database.scalar("SELECT count(*) FROM ecommerce_bad_records") }

            // Pipeline B: assigned with nothing stored, loads offsets 0–4 (3 is invalid: price -1).
            var result = try Self.load(
                [Self.assigned(nil)] + (0..<5).map { Self.record($0, price: $0 == 3 ? "-1" : "") }, database, bad: bad)
            #expect(try stored() == "5")
            #expect(try rows() == "4")
            #expect(try deadLetters() == "1")
            #expect(!result.stderr.contains("fenced"))

            // Pipeline A held the partition before B and still has offsets 0–9 in its pipe, read
            // from stored offset 0: its commit is fenced and rolled back; it keeps only 5–9.
            let stale = [Self.assigned(0)] + (0..<10).map { Self.record($0, price: $0 == 3 ? "-1" : "") }
            result = try Self.load(stale, database, bad: bad)
            #expect(result.stderr.contains("events/0: fenced: the stored next offset is 5, the batch continued from 0"))
            #expect(result.stderr.contains("5 lines below 5 dropped as already loaded"))
            #expect(try stored() == "10")
            #expect(try rows() == "9")
            #expect(try deadLetters() == "1")

            // The same stale stream again: all of it is below the stored offset; nothing changes.
            result = try Self.load(stale, database, bad: bad)
            #expect(result.stderr.contains("fenced"))
            #expect(try stored() == "10")
            #expect(try rows() == "9")
            #expect(try deadLetters() == "1")
            #expect(try database.scalar("SELECT count(DISTINCT event_id) FROM ecommerce_events") == "9")
        }
    }

    @Test func aReassignmentToTheSamePipelineDropsRedeliveriesStillInThePipe() throws {
        try TestDatabase.with { database in
            let bad = try temporaryFolder("kafka-redeliver")
            defer { try? FileManager.default.removeItem(at: bad) }
            // Revoked and assigned again while 0–9 were in the pipe: consume read stored offset 3
            // (an earlier commit), so 3–9 come again; validate sees them as duplicate ids, but load
            // drops them by offset before that matters: 0–14 load once, no dead letters.
            let lines =
                [Self.assigned(nil)] + (0..<10).map { Self.record($0) }
                + [Self.assigned(3)] + (3..<15).map { Self.record($0) }
            let result = try Self.load(lines, database, bad: bad)
            #expect(try database.scalar("SELECT count(*) FROM ecommerce_events") == "15")
            #expect(try database.scalar("SELECT count(*) FROM ecommerce_bad_records") == "0", "\(result.stderr)")
            #expect(try database.scalar("SELECT next_offset FROM ingest_kafka_offsets WHERE partition = 0") == "15")

            // Assigned again after another pipeline loaded past everything held (stored 20):
            // what this one holds is stale and dropped; 20–21 load.
            let later = [Self.assigned(15)] + (15..<18).map { Self.record($0) } + [Self.assigned(20)] + (20..<22).map { Self.record($0) }
            // Another pipeline's commit of 15–19, simulated by moving the stored offset.
            try database.connect().execute("UPDATE ingest_kafka_offsets SET next_offset = 20 WHERE partition = 0")
            _ = try Self.load(later, database, bad: bad)
            #expect(try database.scalar("SELECT count(*) FROM ecommerce_events") == "17")
            #expect(try database.scalar("SELECT next_offset FROM ingest_kafka_offsets WHERE partition = 0") == "22")
        }
    }

    @Test func offsetsKafkaNoLongerHasAreReported() throws {
        try TestDatabase.with { database in
            let bad = try temporaryFolder("kafka-gap")
            defer { try? FileManager.default.removeItem(at: bad) }
            // Retention deleted 2–4 before they were loaded: 0, 1, 5 load; the gap is logged.
            let result = try Self.load([Self.assigned(nil)] + [0, 1, 5].map { Self.record($0) }, database, bad: bad)
            #expect(result.stderr.contains("events/0: offsets 2–4 were not delivered (3 messages"))
            #expect(try database.scalar("SELECT count(*) FROM ecommerce_events") == "3")
            #expect(try database.scalar("SELECT next_offset FROM ingest_kafka_offsets WHERE partition = 0") == "6")
        }
    }

    @Test func twoLoadsCommittingOnePartitionAtOnceNeverDouble() throws {
        try TestDatabase.with { database in
            let bad = try temporaryFolder("kafka-race")
            defer { try? FileManager.default.removeItem(at: bad) }
            // Two pipelines both believe they own partition 0 from offset 0 (a rebalance in
            // flight) and commit overlapping runs concurrently, in many small batches.
            let count = 3_000
            let lines = [Self.assigned(nil)] + (0..<count).map { Self.record($0, price: $0 % 97 == 0 ? "-1" : "") }
            let group = DispatchGroup()
            let results = ResultBox()
            for _ in 0..<2 {
                DispatchQueue.global().async(group: group) {
                    let r = try? runTool(
                        URL(fileURLWithPath: "/bin/sh"),
                        [
                            "-c",
                            "'\(Executables.url("validate").path)' | '\(Executables.url("load").path)' --db '\(database.conninfo)' --bad-records '\(bad.path)' --batch-rows 100",
                        ],
                        stdin: Data((lines.joined(separator: "\n") + "\n").utf8))
                    results.add(r)
                }
            }
            group.wait()
            #expect(results.statuses == [0, 0])
            // Both start with nothing stored: whichever commits second is fenced at least once.
            #expect(results.stderr.contains("fenced"))
            let invalid = (0..<count).filter { $0 % 97 == 0 }.count
            #expect(try database.scalar("SELECT count(*) FROM ecommerce_events") == String(count - invalid))
            #expect(try database.scalar("SELECT count(*) FROM ecommerce_bad_records") == String(invalid))
            #expect(try database.scalar("SELECT next_offset FROM ingest_kafka_offsets WHERE partition = 0") == String(count))
        }
    }
}

final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [ToolResult?] = []
    func add(_ r: ToolResult?) {
        lock.lock()
        results.append(r)
        lock.unlock()
    }
    var statuses: [Int32] { results.map { $0?.status ?? -1 } }
    var stderr: String { results.map { $0?.stderr ?? "" }.joined(separator: "\n") }
}
