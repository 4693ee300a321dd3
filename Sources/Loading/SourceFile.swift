import Ingest
import Postgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What `load` does to a source file after its rows are committed.
enum SourceFile {
    /// Moves `path` into `folder`, never over an existing file (`name.1`, `name.2`, … instead).
    /// A full disk (no room for a directory entry) is waited out.
    static func move(_ path: String, into folder: ContainedFolder, name: String) throws -> String {
        try waitingForSpace(at: folder.path + "/" + name, needing: 4096) {
            try moveOnce(path, into: folder, name: name)
        }
    }

    private static func moveOnce(_ path: String, into folder: ContainedFolder, name: String) throws -> String {
        try folder.create()
        var suffix = 0
        while true {
            let candidate = suffix == 0 ? name : "\(name).\(suffix)"
            guard let target = folder.child(candidate) else { throw SystemError("rename", errno: EINVAL, path: candidate) }
            // link + unlink: rename(2) would silently replace an archived file of the same name.
            if link(path, target) == 0 {
                unlink(path)
                return target
            }
            if errno == EEXIST {
                suffix += 1
                continue
            }
            if errno == EXDEV || errno == EPERM {
                throw SystemError("link", errno: errno, path: "\(path) -> \(target)")
            }
            throw SystemError("link", errno: errno, path: target)
        }
    }

    /// Records a committed file in the folder's journal, which `watch` reads at start-up.
    static func appendJournal(folder: ContainedFolder, file: FileFingerprint) throws {
        let journal = CommittedJournal(path: folder.path + "/" + CommittedJournal.defaultName)
        try journal.append(file)
    }
}
