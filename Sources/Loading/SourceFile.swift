import Postgres
import Ingest

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What `load` does to a source file after its rows are committed.
enum SourceFile {
    /// True when `path` is a regular file with this size and content hash: the version that
    /// was committed, not a newer one that replaced it under the same name.
    ///
    /// With the inode and mtime the end marker carries, one `lstat` decides (the file was
    /// hashed once, while it was read); without them, the file is hashed again.
    static func matches(path: String, bytes: Int64, sha256: String, inode: UInt64? = nil, mtimeNanoseconds: Int64? = nil)
        -> Bool
    {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, Int64(st.st_size) == bytes else { return false }
        if let inode, let mtimeNanoseconds {
            let now = FileVersion(st)
            return now.inode == inode && now.mtimeNanoseconds == mtimeNanoseconds
        }
        guard let digest = try? FileDigest.of(path: path) else { return false }
        return digest.bytes == bytes && digest.sha256 == sha256
    }

    /// Moves `path` into `folder`, never over an existing file (`name.1`, `name.2`, … instead).
    static func move(_ path: String, into folder: ContainedFolder, name: String) throws -> String {
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
    static func appendJournal(folder: ContainedFolder, identity: FileIdentity) throws {
        let journal = CommittedJournal(path: folder.path + "/" + CommittedJournal.defaultName)
        try journal.append(FileMarker(file: identity.name, rows: 0, bytes: identity.bytes, sha256: identity.sha256, seen: nil))
    }
}
