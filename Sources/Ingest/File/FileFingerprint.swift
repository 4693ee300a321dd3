#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One version of a file as `lstat`/`fstat` describe it, without reading it.
///
/// A writer that appends, rewrites or replaces the file changes at least one of inode, size
/// and mtime, so two equal versions are (for every practical writer) the same bytes.
public struct FileVersion: Hashable, Sendable {
    public var device: UInt64
    public var inode: UInt64
    public var size: Int64
    /// Last modification, nanoseconds since the epoch.
    public var modifiedNanoseconds: Int64
    /// Last status change (ctime), nanoseconds since the epoch: a writer cannot set it back,
    /// so a replacement with a forged mtime still differs.
    public var changedNanoseconds: Int64

    public init(device: UInt64, inode: UInt64, size: Int64, modifiedNanoseconds: Int64, changedNanoseconds: Int64) {
        self.device = device
        self.inode = inode
        self.size = size
        self.modifiedNanoseconds = modifiedNanoseconds
        self.changedNanoseconds = changedNanoseconds
    }

    public init(_ st: stat) {
        #if os(Linux)
        let (m, c) = (st.st_mtim, st.st_ctim)
        #else
        let (m, c) = (st.st_mtimespec, st.st_ctimespec)
        #endif
        self.init(
            device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: Int64(st.st_size),
            modifiedNanoseconds: Int64(m.tv_sec) * 1_000_000_000 + Int64(m.tv_nsec),
            changedNanoseconds: Int64(c.tv_sec) * 1_000_000_000 + Int64(c.tv_nsec))
    }

    /// The version at `path` itself (a final symlink is described, not followed).
    public static func at(path: String) throws -> FileVersion {
        var st = stat()
        guard lstat(path, &st) == 0 else { throw SystemError("lstat", errno: errno, path: path) }
        return FileVersion(st)
    }

    /// The version behind an open descriptor.
    public static func of(fd: Int32, path: String) throws -> FileVersion {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SystemError("fstat", errno: errno, path: path) }
        return FileVersion(st)
    }
}

/// A file as the pipeline names it everywhere (end marker, committed-files journal, loader,
/// the check before archiving): its name, its content (size and SHA-256 of the bytes read),
/// and, when the reader knew them, the inode and mtime of the version it read.
///
/// Equality and hashing use name and content only: that is the checkpoint's identity, so the
/// same bytes read twice (a `touch` in between) are one file. `isVersion(_:)` tells on-disk
/// versions apart without reading them.
public struct FileFingerprint: Hashable, Sendable {
    public var name: String
    public var bytes: Int64
    /// Lowercase hex SHA-256 of the bytes read.
    public var sha256: String
    /// The inode of the version read; nil in markers from older writers and for replayed input.
    public var inode: UInt64?
    /// The mtime (ns since the epoch) of the version read; nil when unknown, as `inode`.
    public var modifiedNanoseconds: Int64?

    public init(name: String, bytes: Int64, sha256: String, inode: UInt64? = nil, modifiedNanoseconds: Int64? = nil) {
        self.name = name
        self.bytes = bytes
        self.sha256 = sha256
        self.inode = inode
        self.modifiedNanoseconds = modifiedNanoseconds
    }

    public init(name: String, digest: FileDigest, version: FileVersion? = nil) {
        self.init(
            name: name, bytes: digest.bytes, sha256: digest.sha256, inode: version?.inode,
            modifiedNanoseconds: version?.modifiedNanoseconds)
    }

    public static func == (a: FileFingerprint, b: FileFingerprint) -> Bool {
        a.name == b.name && a.bytes == b.bytes && a.sha256 == b.sha256
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(name)
        hasher.combine(bytes)
        hasher.combine(sha256)
    }

    /// True when the content matches a digest.
    public func hasContent(_ digest: FileDigest) -> Bool {
        bytes == digest.bytes && sha256 == digest.sha256.lowercased()
    }

    /// True when `version` is the version this fingerprint was read from: same size, and the
    /// same inode and mtime when those are known. Without them only the size can be compared,
    /// so callers hash the file (`isStill(at:)`).
    public func isVersion(_ version: FileVersion) -> Bool {
        guard version.size == bytes else { return false }
        if let inode, inode != version.inode { return false }
        if let modifiedNanoseconds, modifiedNanoseconds != version.modifiedNanoseconds { return false }
        return true
    }

    /// True when the regular file at `path` is still the version read: by `lstat` when the
    /// inode and mtime are known (no reading), by its SHA-256 otherwise. A final symlink, a
    /// vanished file or any other version is false.
    public func isStill(at path: String) -> Bool {
        guard let version = try? FileVersion.at(path: path), isVersion(version) else { return false }
        if inode != nil && modifiedNanoseconds != nil { return true }
        guard let digest = try? FileDigest.of(path: path) else { return false }
        return hasContent(digest)
    }
}
