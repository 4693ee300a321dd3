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
    /// file that merely reuses the name (a recurring export with its own rows).
    ///
    /// It is the committed file changed when none of its rows could be read as records (a
    /// later part written without a header after the first part was archived), or when some
    /// of its first records are already loaded (`alreadyLoaded`: it was appended to or
    /// rewritten after it was read). Judged from what was read, not from the folder, which may
    /// hold yet another version by now. Loading it would dead-letter the part already loaded.
    static func quarantine(_ file: PendingFile, committed: CommittedVersion, alreadyLoaded: Int) -> QuarantinedFile? {
        guard let fingerprint = file.fingerprint else { return nil }
        let name = fingerprint.name
        let head = "\(name) was committed at \(committed.committedAt) (\(committed.bytes) bytes, \(committed.rows) rows)"
        if file.records == 0 && file.rejects > 0 {
            return QuarantinedFile(
                name: name, reason: "changed after commit",
                detail: "\(head); this later version of \(fingerprint.bytes) bytes has no readable record (a part written after the first was loaded, without a header?). None of it is loaded. Add the header and put it back under a new file name.")
        }
        if alreadyLoaded > 0 {
            let grown = fingerprint.bytes > committed.bytes ? "it has grown to \(fingerprint.bytes) bytes since" : "it was rewritten since (\(fingerprint.bytes) bytes)"
            return QuarantinedFile(
                name: name, reason: "changed after commit",
                detail: "\(head); \(grown), and \(alreadyLoaded) of its first rows are already loaded: it is that file changed after it was read. None of this version is loaded. Write the rows that are not in the table, under the header, to a new file name in the incoming folder.")
        }
        return nil
    }

    /// Event ids of a file's first `limit` records, for the "already loaded?" probe.
    static func firstIDs(_ file: PendingFile, limit: Int = 1_000) throws -> [String] {
        var decoder = LineDecoder()
        var ids: [String] = []
        try file.lines.forEachLine { bytes in
            guard ids.count < limit, let line = try? decoder.decode(bytes), line.kind == .record,
                let id = line.string(.eventID), looksLikeUUID(id)
            else { return }
            ids.append(id.lowercased())
        }
        return ids
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
