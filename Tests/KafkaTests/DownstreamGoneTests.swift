import Foundation
import Kafka
import TestSupport
import Testing

@testable import Consuming

/// Every stage notices that the stage after it is gone, even with no input (issue 22, item 6).
@Suite struct DownstreamGoneTests {
    /// kill -9 of an idle `load`: `validate` (idle on its input) and then `consume` exit at once,
    /// and the group gives their partitions to the other pipeline. Before, both stayed (and kept
    /// the partitions) until the next message arrived.
    @Test func killingAnIdleLoadHandsItsPartitionsOverAtOnce() throws {
        try TestDatabase.with { database in
            let kafka = try MockKafka()
            defer { kafka.stop() }
            let folder = try temporaryFolder("kafka-downstream")
            defer { try? FileManager.default.removeItem(at: folder) }
            let bad = folder.appendingPathComponent("bad")
            let a = try KafkaPipeline(
                name: "a", folder: folder, brokers: kafka.bootstrap, group: "g", conninfo: database.conninfo, bad: bad)
            #expect(eventually(timeout: 60) { a.log("consume").contains("assigned events") })
            let b = try KafkaPipeline(
                name: "b", folder: folder, brokers: kafka.bootstrap, group: "g", conninfo: database.conninfo, bad: bad)
            #expect(eventually(timeout: 60) { b.log("consume").contains("assigned events") }, "\(b.log("consume"))")
            // Both idle (nothing produced); a holds some partitions, b the others.
            let assignedBefore = b.log("consume").components(separatedBy: "assigned ").count
            let killed = Date()
            a.signal("load", SIGKILL)
            let gone = exitTimes(of: ["validate", "consume"].map { a.pid($0) }, names: ["validate", "consume"], since: killed)
            let reassigned = eventually(timeout: 60) { b.log("consume").components(separatedBy: "assigned ").count > assignedBefore }
            let handedOver = Date().timeIntervalSince(killed)
            print(
                "downstream gone: after kill -9 of an idle load, validate exited after \(gone["validate"].map { String(format: "%.2f", $0) } ?? "never") s, consume after \(gone["consume"].map { String(format: "%.2f", $0) } ?? "never") s; the other pipeline had the partitions after \(String(format: "%.1f", handedOver)) s"
            )
            #expect((gone["validate"] ?? 99) < 5 && (gone["consume"] ?? 99) < 5, "\(a.log("validate"))\n\(a.log("consume"))")
            #expect(reassigned && handedOver < 30, "a:\n\(a.log("consume"))\nb:\n\(b.log("consume"))")
            #expect(a.waitForExit(timeout: 30))
            #expect(b.log("consume").contains("events/0") && !b.log("consume").contains("revoked \n"))

            // b loads what is produced from here on.
            let events = try runTool(
                Executables.url("gen"), ["--stdout", "--files", "1", "--rows-per-file", "30", "--invalid-rate", "0", "--seed", "7"])
            #expect(events.status == 0, "\(events.stderr)")
            try kafka.produce(events.stdout)
            let loaded = try eventually(timeout: 60) { try database.scalar("SELECT count(*) FROM ecommerce_events") == "30" }
            #expect(loaded, "b:\n\(b.log("consume"))\n\(b.log("validate"))\n\(b.log("load"))")
            b.signal("consume", SIGINT)
            #expect(b.waitForExit(timeout: 60))
        }
    }

    /// A broker whose high watermark is below the stored offset: the lag is 0, not negative.
    @Test func lagNeverGoesNegative() {
        let behind = PartitionLag(partition: TopicPartition(topic: "t", partition: 0), nextOffset: 120, lowWatermark: 0, highWatermark: 100)
        #expect(behind.lag == 0 && behind.isPastHighWatermark)
        let usual = PartitionLag(partition: TopicPartition(topic: "t", partition: 0), nextOffset: 40, lowWatermark: 0, highWatermark: 100)
        #expect(usual.lag == 60 && !usual.isPastHighWatermark)
        let cut = PartitionLag(partition: TopicPartition(topic: "t", partition: 0), nextOffset: nil, lowWatermark: 70, highWatermark: 100)
        #expect(cut.lag == 30)
    }
}

/// Seconds from `since` until each process exited (polled every 10 ms, at most 30 s).
func exitTimes(of pids: [Int32?], names: [String], since: Date) -> [String: Double] {
    var gone: [String: Double] = [:]
    while gone.count < pids.count && Date().timeIntervalSince(since) < 30 {
        for (pid, name) in zip(pids, names) where gone[name] == nil {
            if let pid, kill(pid, 0) == 0 && !isZombie(pid) { continue }
            gone[name] = Date().timeIntervalSince(since)
        }
        usleep(10_000)
    }
    return gone
}

/// True for a process that exited and was not reaped yet (kill(pid, 0) still succeeds on it).
func isZombie(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
    return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
}
