import Ingest

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file `load` will not load: moved to the quarantine folder with `<file>.reason.json`
/// (`{"file","reason","detail","at"}`) beside it, for an operator to decide.
struct QuarantinedFile {
    var name: String
    /// A short, stable reason (`changed after commit`).
    var reason: String
    /// What happened and what to do, in a sentence or two.
    var detail: String
}

/// What the checkpoints say about an earlier version of a file's name.
struct CommittedVersion {
    var bytes: Int64
    var sha256: String
    var committedAt: String
    var rows: Int
}

enum ChangedFile {
    /// Why a file under an already committed name must not be loaded, or nil when it is a new
    /// file that merely reuses the name (a recurring export with its own header and content).
    ///
    /// It is the committed file's continuation when it starts with the committed bytes (it was
    /// appended to after it was read) or when none of its rows could be read as records (a
    /// later part written without a header after the first part was archived). Loading it
    /// would dead-letter or double the part already loaded.
    static func quarantine(_ file: PendingFile, source: String?, committed: CommittedVersion) -> QuarantinedFile? {
        guard let fingerprint = file.fingerprint else { return nil }
        let name = fingerprint.name
        let head = "\(name) was committed at \(committed.committedAt) (\(committed.bytes) bytes, \(committed.rows) rows)"
        if let source, fingerprint.bytes > committed.bytes,
            let prefix = try? FileDigest.of(path: source, limit: committed.bytes),
            prefix.bytes == committed.bytes, prefix.sha256 == committed.sha256.lowercased()
        {
            return QuarantinedFile(
                name: name, reason: "changed after commit",
                detail: "\(head); it has grown to \(fingerprint.bytes) bytes since: the rows after byte \(committed.bytes) were appended after it was read and are not loaded. Write them, under the header, to a new file name in the incoming folder.")
        }
        if file.records == 0 && file.rejects > 0 {
            return QuarantinedFile(
                name: name, reason: "changed after commit",
                detail: "\(head); this later version of \(fingerprint.bytes) bytes has no readable record (a part written after the first was loaded, without a header?). None of it is loaded. Add the header and put it back under a new file name.")
        }
        return nil
    }

    /// Moves `path` into `folder` (never over an existing file) and writes its reason beside it.
    static func move(_ path: String, _ file: QuarantinedFile, into folder: ContainedFolder) throws -> String {
        let moved = try SourceFile.move(path, into: folder, name: file.name)
        let base = String(moved.split(separator: "/").last ?? Substring(file.name))
        var json: [UInt8] = []
        var w = JSONWriter()
        w.beginObject(&json)
        w.key("file", &json)
        w.string(file.name, &json)
        w.key("reason", &json)
        w.string(file.reason, &json)
        w.key("detail", &json)
        w.string(file.detail, &json)
        w.key("at", &json)
        w.string(UTCTimestamp.now().rfc3339, &json)
        w.endLine(&json)
        try folder.writeAtomically(base + ".reason.json", json)
        return moved
    }
}
