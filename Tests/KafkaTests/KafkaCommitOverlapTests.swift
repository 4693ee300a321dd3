import Foundation
import Postgres
import TestSupport
import Testing

/// A Kafka batch commits on a commit thread while `load` reads the next one (issue 23): the
/// test holds the partition's offset row locked, so the first batch's commit waits, and checks
/// that `load` keeps reading meanwhile, and that a fence found by the waiting commit trims the
/// lines read since as well.
@Suite(.serialized) struct KafkaCommitOverlapTests {
    /// `load` fed in the background (``FedLoad``): the test sees whether load took the lines in
    /// or left the writer stuck on a full pipe. Commits by size only after 5,000 rows and by age
    /// after a minute: the second feed below never triggers one itself.
    static func startLoad(_ database: TestDatabase, bad: URL) throws -> FedLoad {
        try FedLoad(
            executable: Executables.url("load"),
            arguments: ["--db", database.conninfo, "--bad-records", bad.path, "--batch-rows", "5000", "--max-delay", "60s"])
    }

    /// Offsets `range` of partition 0 as `validate` writes them (~260 bytes a line); an event's id
    /// is its offset's.
    static func records(_ range: Range<Int>) -> [String] {
        range.map { offset in
            #"{"kind":"record","topic":"events","partition":0,"offset":\#(offset),"event_id":"\#(eventID(offset))","user_id":1,"product_id":2,"event_type":"view","price":null,"event_timestamp":"2024-01-30T10:15:23.000Z"}"#
        }
    }

    static func eventID(_ offset: Int) -> String { String(format: "6f1c5b7e-2b1a-4c1e-9f0a-%012d", offset) }

    /// Locks partition 0's offset row (stored: 0) in a transaction of the test's own, so that a
    /// batch's offset update waits until the test commits or rolls back.
    static func lockOffsetRow(_ database: TestDatabase) throws -> PostgresConnection {
        let holder = try database.connect()
        try holder.execute("INSERT INTO ingest_kafka_offsets (topic, partition, next_offset) VALUES ('events', 0, 0)")
        try holder.execute("BEGIN")
        try holder.execute("SELECT 1 FROM ingest_kafka_offsets WHERE topic = 'events' AND partition = 0 FOR UPDATE")
        return holder
    }

    /// True while one of load's sessions waits for a lock (the first batch's offset update).
    static func loadWaitsForALock(_ database: TestDatabase) throws -> Bool {
        try database.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'ingest-load %' AND wait_event_type = 'Lock'",
            [database.name]) != "0"
    }

    /// The first batch (offsets 0–499) waits for the row lock; 3,000 more lines (~780 KB, many
    /// times what a pipe holds) are written meanwhile. load reads them all while the first commit
    /// still waits: before issue 23 it committed Kafka lines on its reading thread and read
    /// nothing until the commit ended, so the writer stayed stuck on a full pipe.
    @Test func loadKeepsReadingWhileAKafkaBatchWaitsForItsCommit() throws {
        try TestDatabase.with { try KafkaCommitOverlapTests.keepsReading($0) }
    }

    static func keepsReading(_ database: TestDatabase) throws {
        do {
            let bad = try temporaryFolder("kafka-overlap")
            defer { try? FileManager.default.removeItem(at: bad) }
            let (holder, load) = try KafkaCommitOverlapTests.readOnBehindAWaitingCommit(database, bad: bad, upTo: 3_500)
            #expect(try KafkaCommitOverlapTests.loadWaitsForALock(database), "the first batch stopped waiting: the test proves nothing")
            #expect(try database.scalar("SELECT count(*) FROM ecommerce_events") == "0")

            try holder.execute("ROLLBACK")
            #expect(load.finish() == 0, "\(load.stderr.text())")
            let log = load.stderr.text()
            #expect(!log.contains("fenced"), "\(log)")
            #expect(try database.scalar("SELECT count(*) FROM ecommerce_events") == "3500")
            #expect(try database.scalar("SELECT count(DISTINCT event_id) FROM ecommerce_events") == "3500")
            #expect(try database.scalar("SELECT next_offset FROM ingest_kafka_offsets WHERE partition = 0") == "3500")
        }
    }

    /// Both tests' opening: partition 0's offset row locked by the returned session, load fed
    /// offsets 0..<500 until its first Kafka commit waits for that lock, then 500..<`upTo`,
    /// which it must read while the commit still waits.
    static func readOnBehindAWaitingCommit(_ database: TestDatabase, bad: URL, upTo: Int) throws -> (PostgresConnection, FedLoad) {
        let holder = try KafkaCommitOverlapTests.lockOffsetRow(database)
        let load = try KafkaCommitOverlapTests.startLoad(database, bad: bad)
        load.feed([KafkaFencingTests.assigned(0)] + KafkaCommitOverlapTests.records(0..<500))
        let waiting = eventually(timeout: 30) { (try? KafkaCommitOverlapTests.loadWaitsForALock(database)) == true }
        #expect(waiting, "\(load.stderr.snapshot())")
        load.feed(KafkaCommitOverlapTests.records(500..<upTo))
        let readOn = eventually(timeout: 30) { load.written == 2 }
        #expect(readOn, "load stopped reading while its Kafka batch waited to commit")
        return (holder, load)
    }

    /// While the first batch waits, "another pipeline" (the test) stores offset 1,000: past the
    /// whole first batch and into the lines load read since. The waiting commit is fenced; the
    /// reader drops the first batch and the lines below 1,000 it holds since, and commits the
    /// rest from 1,000: one fence, no second one for the next batch, nothing loaded twice.
    @Test func aFenceFoundByAWaitingCommitTrimsTheLinesReadSince() throws {
        try TestDatabase.with { try KafkaCommitOverlapTests.fenceTrimsTheLinesReadSince($0) }
    }

    static func fenceTrimsTheLinesReadSince(_ database: TestDatabase) throws {
        do {
            let bad = try temporaryFolder("kafka-overlap-fence")
            defer { try? FileManager.default.removeItem(at: bad) }
            let (holder, load) = try KafkaCommitOverlapTests.readOnBehindAWaitingCommit(database, bad: bad, upTo: 3_000)

            try holder.execute("UPDATE ingest_kafka_offsets SET next_offset = 1000 WHERE topic = 'events' AND partition = 0")
            try holder.execute("COMMIT")
            #expect(load.finish() == 0, "\(load.stderr.text())")
            let log = load.stderr.text()
            #expect(log.components(separatedBy: "fenced").count == 2, "\(log)")
            #expect(log.contains("events/0: fenced: the stored next offset is 1000, the batch continued from 0"), "\(log)")
            #expect(try database.scalar("SELECT count(*) FROM ecommerce_events") == "2000")
            #expect(try database.scalar("SELECT min(event_id::text) FROM ecommerce_events") == KafkaCommitOverlapTests.eventID(1_000))
            #expect(try database.scalar("SELECT next_offset FROM ingest_kafka_offsets WHERE partition = 0") == "3000")
        }
    }
}
