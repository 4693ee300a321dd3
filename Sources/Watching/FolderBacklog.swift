import Ingest

/// The files `watch` knows are complete in its folder and has not sent yet: what `progress`
/// lines report (count, bytes, oldest modification time).
///
/// Known means listed at start or on a rescan, or reported by an event: files that arrive while
/// watch is busy with a long file are counted once it gets to their events.
public final class FolderBacklog {
    private var files: [String: (bytes: Int64, modifiedMilliseconds: Int64)] = [:]

    public init() {}

    public func add(_ name: String, _ identity: FileVersion) {
        files[name] = (identity.size, identity.modifiedNanoseconds / 1_000_000)
    }

    public func remove(_ name: String) {
        files[name] = nil
    }

    public var progress: FolderProgress {
        var bytes: Int64 = 0
        var oldest: Int64?
        for file in files.values {
            bytes += file.bytes
            oldest = min(oldest ?? file.modifiedMilliseconds, file.modifiedMilliseconds)
        }
        return FolderProgress(
            filesPending: files.count, bytesPending: bytes,
            oldestPending: oldest.map { UTCTimestamp(millisecondsSinceEpoch: $0) })
    }
}
