import Foundation
import TestSupport
import Testing

/// A partition whose log retention already cut (issue 22, item 5): with no stored offset it
/// starts at its low watermark, and the log says where, so a user learns that the messages
/// before it were never seen. librdkafka's mock cluster keeps a few MB per partition: 12 MB of
/// messages cut the log.
@Suite struct LowWatermarkTests {
    @Test func aCutLogSaysWhereItStarts() throws {
        try TestDatabase.with { database in
            let kafka = try MockKafka(partitions: 1)
            defer { kafka.stop() }
            let message = #"{"pad":""# + String(repeating: "x", count: 1_000) + "\"}\n"
            try kafka.produce(String(repeating: message, count: 12_000))
            let lag = try runTool(
                Executables.url("consume"),
                ["--brokers", kafka.bootstrap, "--topic", "events", "--group", "g", "--lag", "--db", database.conninfo])
            #expect(lag.status == 0, "\(lag.stderr)")
            let partition = try #require(try JSONSerialization.jsonObject(with: Data(lag.stdout.utf8)) as? [String: Any])
            let low = try #require(partition["low_watermark"] as? Int)
            let high = try #require(partition["high_watermark"] as? Int)
            #expect(low > 0 && high == 12_000, "\(partition)")
            #expect(partition["lag"] as? Int == high - low)

            let consumed = try runTool(
                Executables.url("consume"),
                ["--brokers", kafka.bootstrap, "--topic", "events", "--group", "g", "--exit-at-end", "--db", database.conninfo]
                    + groupSettings)
            #expect(consumed.status == 0, "\(consumed.stderr)")
            #expect(
                consumed.stderr.contains(
                    "events/0 from the beginning (no stored offset) at its low watermark \(low): offsets 0…\(low - 1) were removed by retention"
                ),
                "\(consumed.stderr)")
            #expect(consumed.lines.filter { $0.contains(#""kind":"record""#) || $0.contains(#""kind":"reject""#) }.count == high - low)
        }
    }
}
