import Ingest

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which names in a watched folder are input files.
///
/// Hidden and temporary names are never input, whatever the pattern: writers put a batch
/// together under such a name and rename it when complete (the `gen` pattern).
public struct FileSelection: Sendable {
    /// An `fnmatch(3)` pattern, `*.csv` by default.
    public var glob: String

    public init(glob: String = "*.csv") {
        self.glob = glob
    }

    /// True for a dot-file or a name a writer uses while a file is incomplete.
    public static func isHiddenOrTemporary(_ name: String) -> Bool {
        if name.hasPrefix(".") || name.hasSuffix("~") { return true }
        let lower = name.lowercased()
        return lower.hasSuffix(".tmp") || lower.hasSuffix(".part")
    }

    /// True when `name` is a candidate input file by its name alone.
    public func matches(_ name: String) -> Bool {
        guard !name.isEmpty, !name.contains("/"), !Self.isHiddenOrTemporary(name) else { return false }
        return fnmatch(glob, name, 0) == 0
    }

    /// Why `name` is not an input file, for the log; nil when it is one.
    public func reasonNotSelected(_ name: String, isDirectory: Bool) -> String? {
        if matches(name) { return nil }
        if isDirectory { return "a directory" }
        if name.hasPrefix(".") { return "a dot-file (hidden)" }
        if Self.isHiddenOrTemporary(name) { return "a temporary name (*.tmp, *.part, *~)" }
        if fnmatch(glob, name, 1 << 4) == 0 {  // FNM_CASEFOLD (a GNU extension Swift does not import)
            return "does not match --glob \(glob) (names are case-sensitive)"
        }
        return "does not match --glob \(glob)"
    }
}

/// A folder being watched: lists its candidate files and decides, for each, whether it may be read.
public struct WatchedFolder: Sendable {
    /// The folder as given (used in messages and paths, so they read as the user typed them).
    public let path: String
    /// The folder with symlinks resolved, for the "symlink stays inside" rule.
    public let resolvedPath: String
    public let selection: FileSelection

    public init(path: String, selection: FileSelection) throws {
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.path = trimmed
        self.selection = selection
        guard let resolved = realpath(trimmed, nil) else { throw SystemError("realpath", errno: errno, path: trimmed) }
        defer { free(resolved) }
        resolvedPath = String(cString: resolved)
    }

    /// The path of `name` in this folder.
    public func path(of name: String) -> String {
        path == "/" ? "/" + name : path + "/" + name
    }

    /// Names matching the selection, in byte order (the order `gen`'s timestamped names sort in).
    /// `ignored` hears each other name (not `.` and `..`), with whether it is a directory.
    public func candidateNames(ignored: (_ name: String, _ isDirectory: Bool) -> Void = { _, _ in }) throws -> [String] {
        guard let dir = opendir(path) else { throw SystemError("opendir", errno: errno, path: path) }
        defer { closedir(dir) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw SystemError("readdir", errno: errno, path: path) }
                break
            }
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: entry.pointee.d_name)) {
                    String(cString: $0)
                }
            }
            if selection.matches(name) {
                names.append(name)
            } else if name != "." && name != ".." {
                ignored(name, entry.pointee.d_type == UInt8(DT_DIR))
            }
        }
        names.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        return names
    }

    /// What to do with a name the selection matched.
    public enum Inspection: Sendable {
        /// A regular file (or a symlink to one inside the folder): read it.
        case file(FileVersion)
        /// Not an input file (a directory, a FIFO, a symlink leading outside): say why, move on.
        case skip(String)
        /// The file cannot be looked at (vanished, dangling symlink, permission): an error line.
        case failure(SystemError)
    }

    /// Looks at `name` without opening it, so a FIFO never blocks `watch`.
    public func inspect(_ name: String) -> Inspection {
        let full = path(of: name)
        var st = stat()
        guard lstat(full, &st) == 0 else { return .failure(SystemError("lstat", errno: errno, path: full)) }
        if (st.st_mode & S_IFMT) == S_IFLNK {
            guard let resolved = realpath(full, nil) else {
                return .failure(SystemError("realpath", errno: errno, path: full))
            }
            let target = String(cString: resolved)
            free(resolved)
            let prefix = resolvedPath == "/" ? "/" : resolvedPath + "/"
            guard target.hasPrefix(prefix) else {
                return .skip("symlink to \(target), outside \(path)")
            }
            guard stat(full, &st) == 0 else { return .failure(SystemError("stat", errno: errno, path: full)) }
        }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return .file(FileVersion(st))
        case S_IFDIR: return .skip("a directory")
        case S_IFIFO: return .skip("a FIFO, not a regular file")
        case S_IFSOCK: return .skip("a socket, not a regular file")
        default: return .skip("not a regular file")
        }
    }
}

/// True when another process has `path` open for writing (Linux: a read lease is refused).
///
/// A file written in place may already be in the folder when `watch` starts; its
/// `IN_CLOSE_WRITE` comes later, so it is read then, not half-written now. Nil when the
/// question cannot be answered (not Linux, another owner without CAP_LEASE, NFS).
public func isOpenForWriting(path: String) -> Bool? {
    #if os(Linux)
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    // F_SETLEASE = 1024, F_RDLCK = 0, F_UNLCK = 2 (fcntl.h; not imported as Swift constants).
    if fcntl(fd, 1024, Int32(0)) == 0 {
        _ = fcntl(fd, 1024, Int32(2))
        return false
    }
    return errno == EAGAIN ? true : nil
    #else
    return nil
    #endif
}
