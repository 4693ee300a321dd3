import Postgres
import Ingest

/// The lines received for one source file (or for records without provenance), waiting for
/// the file's end marker and then for the commit.
final class PendingFile {
    /// The source file name as the stream gave it; nil for records without provenance.
    let name: String?
    /// Records and rejects as received, in arrival order.
    let lines: Spool
    var records = 0
    var rejects = 0
    /// Set when the end marker arrived: the file is complete and may be committed.
    var marker: FileMarker?
    /// Why the complete file is refused as a whole (over the reject threshold); nil: it loads.
    var refusal: String?
    /// Set for a Kafka partition's lines: the offsets they cover, for the commit's fencing.
    var kafka: KafkaSpan?
    /// Monotonic time of the first line, for `--max-delay`.
    let firstLineAt: Double

    init(name: String?, spoolLimit: Int, spoolDirectory: String) {
        self.name = name
        self.lines = Spool(memoryLimit: spoolLimit, directory: spoolDirectory)
        self.firstLineAt = monotonicSeconds()
    }

    var rowCount: Int { records + rejects }

    /// The file as its marker describes it, under the name its lines carried.
    var fingerprint: FileFingerprint? {
        guard let name, var fingerprint = marker?.fingerprint else { return nil }
        fingerprint.name = name
        return fingerprint
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Seconds on a clock that never jumps, for measuring delays.
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
