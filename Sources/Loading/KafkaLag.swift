import Ingest
import Telemetry

/// `ingest_kafka_consumer_lag{topic,partition}` on load's metrics endpoint: the messages of a
/// partition not committed yet, its high watermark minus the stored next offset.
///
/// `consume` writes a `watermarks` line for each assigned partition every second (the
/// watermarks of its last fetch, docs/protocol.md); at each one, load's reading thread sets the
/// gauge from the high watermark and the next offset its run of the partition continues from —
/// what its last commit stored, or the stored offset `consume` announced at the assignment.
/// So the figure is at most about a second behind a commit. A partition no `watermarks` line
/// named for `forgetAfterSeconds` (revoked, read by another pipeline now) loses its series, so
/// only the pipeline reading a partition reports it.
///
/// Owned by the reading thread, like the ``KafkaRuns`` that holds it.
final class KafkaLag {
    static let forgetAfterSeconds = 10.0
    private let metrics: LoadMetrics

    init(metrics: LoadMetrics) { self.metrics = metrics }

    private struct Reported {
        var topic: String
        var partition: Int32
        var at: Double
    }
    private var reported: [KafkaRuns.Key: Reported] = [:]

    /// Handles a `watermarks` line of the partition `key` whose run (nil: never assigned here)
    /// holds the committed next offset. Returns the rows it added: none.
    func observe(_ line: ProtocolLine, _ key: KafkaRuns.Key, _ run: KafkaRuns.Run?) -> Int {
        guard let high = Self.int64(line, "high_watermark") else { return 0 }
        let now = monotonicSeconds()
        let partition = Int32(truncatingIfNeeded: key.partition)
        for (old, entry) in reported where now - entry.at > Self.forgetAfterSeconds {
            metrics.removeKafkaLag(topic: entry.topic, partition: entry.partition)
            reported[old] = nil
        }
        // Unknown while the partition is halted (its stored offset went backwards) or was
        // never assigned to this load: no figure rather than a wrong one.
        guard let run, !run.halted else { return 0 }
        let low = Self.int64(line, "low_watermark") ?? 0
        let committed = max(run.from ?? low, low)
        metrics.kafkaLag(topic: key.topic, partition: partition, messages: max(0, high - committed))
        reported[key] = Reported(topic: key.topic, partition: partition, at: now)
        return 0
    }

    private static func int64(_ line: ProtocolLine, _ name: StaticString) -> Int64? {
        let wanted = UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
        guard let m = line.members.last(where: { line.keySpan($0).elementsEqual(wanted) }), m.kind == .number else { return nil }
        return Int64(String(decoding: line.span(m), as: UTF8.self))
    }
}
