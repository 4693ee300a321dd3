#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The list of files `load --keep` has committed, kept in the watched folder as
/// `.ingest-committed` (a dot-file, so `watch` never reads it as input).
///
/// One JSON line per committed file: `{"file":"batch_….csv","bytes":4321,"sha256":"<hex>"}`.
/// `load` appends after each commit; `watch` reads it at start to skip files whose exact
/// content was already committed, so a restart does not re-send a folder of kept files.
public struct CommittedJournal: Sendable {
    /// The journal's conventional name inside a watched folder.
    public static let defaultName = ".ingest-committed"

    public let path: String
    /// fsync after each append: the line survives a power loss, at the cost of a disk flush.
    public var synchronous: Bool

    public init(path: String, synchronous: Bool = false) {
        self.path = path
        self.synchronous = synchronous
    }

    /// Appends one line for a committed file.
    ///
    /// One `write(2)` with `O_APPEND`, so concurrent appenders never interleave a line and a
    /// reader sees whole lines (plus, after a crash, at most one cut-off last line, which
    /// `load()` ignores).
    public func append(_ file: FileFingerprint) throws {
        var line: [UInt8] = []
        line.reserveCapacity(160)
        var w = JSONWriter()
        w.beginObject(&line)
        w.key("file", &line)
        w.string(file.name, &line)
        w.key("bytes", &line)
        w.int(Int(file.bytes), &line)
        w.key("sha256", &line)
        w.string(file.sha256, &line)
        w.endLine(&line)

        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("open", errno: errno, path: path) }
        defer { close(fd) }
        let written = line.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
        if written != line.count {
            throw SystemError("write", errno: written < 0 ? errno : EIO, path: path)
        }
        if synchronous && fsync(fd) != 0 {
            throw SystemError("fsync", errno: errno, path: path)
        }
    }

    /// Every committed file by name; a name committed twice keeps its last entry.
    ///
    /// A missing journal is empty. Lines that are not entries (a cut-off last line after a
    /// crash, stray text) are skipped: the journal only ever saves work, never loses data.
    public func load() throws -> [String: FileFingerprint] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return [:] }
            throw SystemError("open", errno: errno, path: path)
        }
        defer { close(fd) }
        let reader = LineReader(fd: fd, maxLineLength: 1 << 16)
        var decoder = LineDecoder()
        var entries: [String: FileFingerprint] = [:]
        do {
            while let item = try reader.next() {
                guard case .line(let bytes) = item,
                    let line = try? decoder.decode(bytes),
                    let file = line.file, let size = line.int(.bytes), let sha = line.string(.sha256),
                    sha.utf8.count == 64
                else { continue }
                entries[file] = FileFingerprint(name: file, bytes: Int64(size), sha256: sha.lowercased())
            }
        } catch let error as SystemError {
            throw SystemError(error.call, errno: error.errno, path: path)
        }
        return entries
    }
}
