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
        try folder.writeAtomically(movedName + ".reason.json", Quarantine.reasonJSON(file: movedName, reason: reason, detail: detail))
        return moved
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
