/// A `progress` line: what the source stage still has to send, so the sink can report the
/// backlog and the lag (`load`'s `ingest_files_pending`, `ingest_oldest_pending_age_seconds`).
///
/// `{"kind":"progress","files_pending":3,"bytes_pending":12345,"oldest_pending":"2024-01-30T10:15:23.456Z"}`
///
/// Written by `watch --progress` before each file it sends, counting the files it has not
/// started yet. `validate` passes it through unchanged (an unknown kind); older `load`s log it
/// once and ignore it.
public struct FolderProgress: Equatable, Sendable {
    /// Files found complete in the folder and not sent yet.
    public var filesPending: Int
    /// Their total size.
    public var bytesPending: Int64
    /// The modification time of the oldest of them; nil when none is pending.
    public var oldestPending: UTCTimestamp?

    public static let kind = "progress"

    public init(filesPending: Int, bytesPending: Int64, oldestPending: UTCTimestamp?) {
        self.filesPending = filesPending
        self.bytesPending = bytesPending
        self.oldestPending = oldestPending
    }

    /// Reads a scanned `progress` line; nil when `files_pending` is missing or not a number.
    public init?(_ line: ProtocolLine) {
        var files: Int?
        var bytes: Int64 = 0
        var oldest: UTCTimestamp?
        for m in line.members {
            let key = String(decoding: line.keySpan(m), as: UTF8.self)
            let text = String(decoding: line.span(m), as: UTF8.self)
            switch (key, m.kind) {
            case ("files_pending", .number): files = Int(text)
            case ("bytes_pending", .number): bytes = Int64(text) ?? 0
            case ("oldest_pending", .string): oldest = UTCTimestamp(parsing: String(text.dropFirst().dropLast()))
            default: break
            }
        }
        guard let files, files >= 0 else { return nil }
        self.init(filesPending: files, bytesPending: max(0, bytes), oldestPending: oldest)
    }
}

extension LineEncoder {
    /// `{"kind":"progress","files_pending":…,"bytes_pending":…,"oldest_pending":…}`
    public static func appendProgress(_ progress: FolderProgress, into out: inout [UInt8]) {
        var w = LineEncoder.beginLine(kind: FolderProgress.kind, into: &out)
        w.key("files_pending", &out)
        w.int(progress.filesPending, &out)
        w.key("bytes_pending", &out)
        w.int(Int(progress.bytesPending), &out)
        if let oldest = progress.oldestPending {
            w.key("oldest_pending", &out)
            w.string(oldest.rfc3339, &out)
        }
        w.endLine(&out)
    }
}
