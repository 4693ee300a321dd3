import Foundation
import TestSupport
import Testing

/// A network partition between `load` and PostgreSQL, both ways, while a Kafka batch is inside
/// its COPY (issue 22): the server's side gives the kept session up, its locks on the offset
/// rows go with it, and every message loads once after the heal. Server, brokers and pipeline
/// run in a network namespace of the test's own; only the PostgreSQL port is dropped.
@Suite struct KafkaPartitionTests {
    static let seconds = Double(ProcessInfo.processInfo.environment["PARTITION_SECONDS"] ?? "") ?? 32
    /// Both ways in the suite; every direction with `bin/torture --partitions`.
    static let directions: [NetworkNamespace.Direction] =
        ProcessInfo.processInfo.environment["PARTITION_ALL_DIRECTIONS"] == "1" ? NetworkNamespace.Direction.allCases : [.both]

    @Test(arguments: KafkaPartitionTests.directions)
    func partitionDuringAKafkaBatchHeals(direction: NetworkNamespace.Direction) throws {
        let namespace = try NetworkNamespace()
        let cluster = try PrivateCluster(namespace: namespace)
        let env = cluster.environment
        let port = try #require(env["PGPORT"])
        try cluster.pauseTheCopyOnce(atUserID: 424242)
        let kafka = try MockKafka(launcher: namespace.command([]))
        defer { kafka.stop() }
        let folder = try temporaryFolder("kafka-partition")
        defer { try? FileManager.default.removeItem(at: folder) }

        let generated = try runTool(
            Executables.url("gen"), ["--stdout", "--files", "1", "--rows-per-file", "6000", "--invalid-rate", "0", "--seed", "22"])
        #expect(generated.status == 0, "\(generated.stderr)")
        var lines = generated.stdout.split(separator: "\n").map(String.init)
        // One message in the middle is the marker the COPY pauses at.
        let marker = try #require(lines[3000].range(of: #""user_id":"[0-9]+""#, options: .regularExpression))
        lines[3000].replaceSubrange(marker, with: #""user_id":"424242""#)
        try kafka.produce(lines.joined(separator: "\n") + "\n")

        let conninfo =
            "host=\(env["PGHOST"] ?? "") port=\(port) user=\(env["PGUSER"] ?? "") password=\(env["PGPASSWORD"] ?? "") dbname=\(env["PGDATABASE"] ?? "")"
        let pipeline = try KafkaPipeline(
            name: "k", folder: folder, brokers: kafka.bootstrap, group: "g", conninfo: conninfo, bad: folder.appendingPathComponent("bad"),
            launcher: namespace.command([]))
        let paused = try eventually(timeout: 90) {
            try cluster.psqlOverSocket("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'") == "1"
        }
        #expect(paused, "\(pipeline.log("consume"))\n\(pipeline.log("load"))")

        try namespace.partition(port: port, direction)
        let cut = Date()
        var noticed: Double?
        while Date().timeIntervalSince(cut) < Self.seconds {
            usleep(200_000)
            if noticed == nil && pipeline.log("load").contains("stopped answering") { noticed = Date().timeIntervalSince(cut) }
        }
        try namespace.heal()
        let healed = Date()
        let allIn = try eventually(timeout: 90) { try cluster.psql("SELECT count(*) FROM ecommerce_events") == "6000" }
        let healTime = Date().timeIntervalSince(healed)
        print(
            "partition \(direction) \(Int(Self.seconds)) s in a Kafka batch's COPY: noticed after \(noticed.map { String(format: "%.1f", $0) } ?? "never") s, every message in \(String(format: "%.1f", healTime)) s after the heal"
        )
        pipeline.signal("consume", SIGINT)
        #expect(pipeline.waitForExit(timeout: 60))
        #expect(allIn && healTime < 60, "\(pipeline.log("load"))")
        #expect((noticed ?? 99) < 30, "\(pipeline.log("load"))")
        #expect(try cluster.psql("SELECT count(*), count(DISTINCT event_id) FROM ecommerce_events") == "6000|6000")
        #expect(try cluster.psql("SELECT sum(next_offset) FROM ingest_kafka_offsets") == "6000")
    }
}
