import Ingest

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// When a file that looks complete (closed after writing, renamed in, stable across scans) is
/// taken as complete (issue 22).
///
/// A writer that closes and reopens a file, or writes it in two parts, closes it once in the
/// middle: read then, the first part was committed, the row cut in the middle became a dead
/// letter (or, cut inside a timestamp, a *shorter valid* value was committed), and the rest was
/// quarantined. A file whose last byte is not a newline is almost always still being written,
/// so it is held until it has been quiet (its mtime `settleMilliseconds` old). `minAgeMilliseconds`
/// holds every file that long, for writers that close between rows (NiFi's Minimum File Age,
/// Camel's `readLock=changed`). A finished writer's file without a final newline still loads,
/// after the settle time.
public struct SettleRule: Sendable {
    public var settleMilliseconds: Int64
    public var minAgeMilliseconds: Int64

    public static let defaultSettleMilliseconds: Int64 = 5_000

    public init(settleMilliseconds: Int64 = SettleRule.defaultSettleMilliseconds, minAgeMilliseconds: Int64 = 0) {
        self.settleMilliseconds = settleMilliseconds
        self.minAgeMilliseconds = minAgeMilliseconds
    }

    /// Why `path` (at `version`) is not taken yet, and the wall-clock time (ms since the epoch)
    /// it may be; nil when it is complete now.
    public func hold(path: String, version: FileVersion, nowMilliseconds: Int64) -> (until: Int64, why: String)? {
        let modified = version.modifiedNanoseconds / 1_000_000
        if minAgeMilliseconds > 0 && nowMilliseconds - modified < minAgeMilliseconds {
            return (modified + minAgeMilliseconds, "younger than --min-age \(formatMilliseconds(minAgeMilliseconds))")
        }
        if settleMilliseconds > 0 && nowMilliseconds - modified < settleMilliseconds && !endsWithNewline(path, size: version.size) {
            return (
                modified + settleMilliseconds,
                "its last byte is not a newline (a writer may still be at it); read once unchanged for \(formatMilliseconds(settleMilliseconds))"
            )
        }
        return nil
    }

    /// True for an empty file, or one whose last byte is `\n`; false when it cannot be read
    /// (the read that follows reports why).
    func endsWithNewline(_ path: String, size: Int64) -> Bool {
        guard size > 0 else { return true }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return true }
        defer { close(fd) }
        var byte: UInt8 = 0
        return pread(fd, &byte, 1, off_t(size - 1)) == 1 && byte == 0x0A
    }
}

func formatMilliseconds(_ ms: Int64) -> String {
    ms % 1000 == 0 ? "\(ms / 1000)s" : "\(ms)ms"
}
