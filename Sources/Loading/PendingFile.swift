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

    /// The checkpoint identity: name, size, content hash.
    var identity: FileIdentity? {
        guard let name, let marker else { return nil }
        return FileIdentity(name: name, bytes: marker.bytes, sha256: marker.sha256)
    }
}

/// How a committed file is recognised when it is seen again.
struct FileIdentity: Hashable {
    var name: String
    var bytes: Int64
    var sha256: String
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
