import Ingest

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The per-file reject threshold (`load --max-reject-rate`, `--max-rejects`): a file over it is
/// refused as a whole, since a file that is mostly garbage (a wrong export, a truncated upload)
/// is better fixed and sent again than loaded row by row.
public struct RejectThreshold: Sendable {
    /// Largest share of rejected rows (0…1) a file may have; nil: no limit.
    public var maxRate: Double?
    /// Largest number of rejected rows a file may have; nil: no limit.
    public var maxRejects: Int?

    public init(maxRate: Double? = nil, maxRejects: Int? = nil) {
        self.maxRate = maxRate
        self.maxRejects = maxRejects
    }

    /// Why a complete file with these counts is refused, or nil when it loads.
    public func refusal(records: Int, rejects: Int) -> String? {
        let rows = records + rejects
        if let maxRejects, rejects > maxRejects {
            return "\(rejects) of \(rows) rows rejected, over --max-rejects \(maxRejects)"
        }
        if let maxRate, rows > 0, Double(rejects) / Double(rows) > maxRate {
            let percent = (Double(rejects) * 1000 / Double(rows)).rounded() / 10
            return "\(rejects) of \(rows) rows rejected (\(percent)%), over --max-reject-rate \(maxRate)"
        }
        return nil
    }
}

/// A folder of files refused as a whole. Each file `NAME` sits next to `NAME.reason.json`:
/// `{"file":"NAME","reason":"…","detail":"…","at":"2026-12-01T03:00:00.000Z"}` (`reason` short
/// and stable, `detail` for a person). Putting a fixed file back into the incoming folder loads it.
///
/// The reason file is a history, one such line per event, first first: a file put back unchanged
/// and refused again (`already quarantined`) adds a line and keeps the first, which says why it
/// was refused at all.
public struct Quarantine: Sendable {
    public let folder: ContainedFolder

    public init(_ folder: ContainedFolder) {
        self.folder = folder
    }

    /// Moves `path` into the folder as `name` (`name.1`, … when taken; never over a file) and
    /// writes its reason beside it. Returns the quarantined path.
    @discardableResult
    public func admit(path: String, name: String, reason: String, detail: String) throws -> String {
        let moved = try SourceFile.move(path, into: folder, name: name)
        let movedName = String(moved.split(separator: "/").last ?? Substring(name))
        let reasonName = movedName + ".reason.json"
        var history = folder.child(reasonName).flatMap(Quarantine.readHistory) ?? []
        if let last = history.last, last != 0x0A { history.append(0x0A) }
        try folder.writeAtomically(reasonName, history + Quarantine.reasonJSON(file: movedName, reason: reason, detail: detail))
        return moved
    }

    /// The earlier lines of a reason file (nil when there is none), read whole: a few lines.
    static func readHistory(_ path: String) -> [UInt8]? {
        try? readFile(path, limit: 1 << 20, followingSymlinks: false)
    }

    /// The `NAME.reason.json` text, one line.
    public static func reasonJSON(file: String, reason: String, detail: String, at: UTCTimestamp = .now()) -> [UInt8] {
        var out: [UInt8] = []
        var w = JSONWriter()
        w.beginObject(&out)
        w.key("file", &out)
        w.string(file, &out)
        w.key("reason", &out)
        w.string(reason, &out)
        w.key("detail", &out)
        w.string(detail, &out)
        w.key("at", &out)
        w.string(at.rfc3339, &out)
        w.endObject(&out)
        out.append(0x0A)
        return out
    }
}

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
                detail:
                    "\(head); this later version of \(fingerprint.bytes) bytes has no readable record (a part written after the first was loaded, without a header?). None of it is loaded. Add the header and put it back under a new file name."
            )
        }
        if alreadyLoaded > 0 {
            let grown =
                fingerprint.bytes > committed.bytes
                ? "it has grown to \(fingerprint.bytes) bytes since" : "it was rewritten since (\(fingerprint.bytes) bytes)"
            return QuarantinedFile(
                name: name, reason: "changed after commit",
                detail:
                    "\(head); \(grown), and \(alreadyLoaded) of its first rows are already loaded: it is that file changed after it was read. None of this version is loaded. Write the rows that are not in the table, under the header, to a new file name in the incoming folder."
            )
        }
        return nil
    }

    /// The keys of a file's first `limit` records (the contract's key), for the "already
    /// loaded?" probe; empty when the contract has no key.
    static func firstKeys(_ file: PendingFile, plan: LoadPlan, limit: Int = 1_000) throws -> [[String]] {
        guard !plan.key.isEmpty else { return [] }
        var decoder = LineDecoder()
        var keys: [[String]] = []
        try file.recordLines.forEachLine { bytes in
            guard keys.count < limit, let line = try? decoder.decode(bytes), line.kind == .record,
                let key = KeyProbe.key(of: line, plan: plan)
            else { return }
            keys.append(key)
        }
        return keys
    }

    /// Moves `path` into `folder` (never over an existing file) and writes its reason beside it.
    static func move(_ path: String, _ file: QuarantinedFile, into folder: ContainedFolder) throws -> String {
        try Quarantine(folder).admit(path: path, name: file.name, reason: file.reason, detail: file.detail)
    }
}
