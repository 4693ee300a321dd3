import SystemPackage

/// Writes all of `raw` to `fd`, through partial writes and EINTR. EPIPE becomes ``BrokenPipe``;
/// other errors name `path` when given.
///
/// `whenFull` is the out-of-space hook: on ENOSPC or EDQUOT it is called with the errno (it
/// waits, or throws to give up) and the write goes on from the byte it stopped at, so the file
/// ends up with every byte once.
public func writeAll(
    _ fd: Int32, _ raw: UnsafeRawBufferPointer, path: String? = nil, whenFull: ((Int32) throws -> Void)? = nil
) throws {
    let descriptor = FileDescriptor(rawValue: fd)
    var offset = 0
    while offset < raw.count {
        do {
            offset += try descriptor.write(UnsafeRawBufferPointer(rebasing: raw[offset...]), retryOnInterrupt: true)
        } catch let error as Errno {
            if error == .brokenPipe { throw BrokenPipe() }
            if let whenFull, error == .noSpace || error == .diskQuotaExceeded {
                try whenFull(error.rawValue)
                continue
            }
            throw SystemError("write", errno: error.rawValue, path: path)
        }
    }
}

/// Creates `path` and every missing parent (`mkdir -p`); an existing folder is fine, an
/// existing file of that name is not.
public func makeDirectories(_ path: String, mode: mode_t = 0o755) throws {
    var st = stat()
    if stat(path, &st) == 0 {
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw SystemError("mkdir", errno: ENOTDIR, path: path) }
        return
    }
    if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
        try makeDirectories(String(path[..<slash]), mode: mode)
    }
    if mkdir(path, mode) != 0 && errno != EEXIST { throw SystemError("mkdir", errno: errno, path: path) }
}

/// Makes the renames and links in folder `path` durable (fsync of the folder); best effort.
public func syncDirectory(_ path: String) {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return }
    _ = fsync(fd)
    close(fd)
}

/// How ``publishAtomically(at:temporary:replacing:sync:_:)`` gives the file its name.
public enum Publication {
    /// rename(2): replaces an earlier file of the name (a replay rewrites the same file).
    case replacing
    /// link(2): fails with EEXIST when the name exists (never replaces another's file).
    case exclusive
}

/// Writes a file under `temporary`, fsyncs it (with `sync`), then gives it the name `path` in
/// one step, so a reader sees the whole file or none. `produce` writes the contents through the
/// descriptor it is given. Returns false when `.exclusive` found the name taken; the temporary
/// file is removed in every case.
@discardableResult
public func publishAtomically(
    at path: String, temporary: String, _ publication: Publication, sync: Bool = true,
    _ produce: (_ fd: Int32) throws -> Void
) throws -> Bool {
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw SystemError("open", errno: errno, path: temporary) }
    defer { unlink(temporary) }
    do {
        defer { close(fd) }
        do { try produce(fd) } catch let error as SystemError where error.path == nil { throw error.about(temporary) }
        if sync && fsync(fd) != 0 { throw SystemError("fsync", errno: errno, path: temporary) }
    }
    switch publication {
    case .replacing:
        guard rename(temporary, path) == 0 else { throw SystemError("rename", errno: errno, path: path) }
    case .exclusive:
        if link(temporary, path) != 0 {
            if errno == EEXIST { return false }
            throw SystemError("link", errno: errno, path: path)
        }
    }
    if sync, let slash = path.lastIndex(of: "/") { syncDirectory(slash == path.startIndex ? "/" : String(path[..<slash])) }
    return true
}

/// The first `limit` bytes of the file at `path` (all of it when it is shorter), through short
/// reads and EINTR: for small files read whole (a contract, a port number, an env file).
/// `followingSymlinks: false` refuses a symlink (ELOOP), for files in folders others can write.
public func readFile(_ path: String, limit: Int, followingSymlinks: Bool = true) throws -> [UInt8] {
    let options: FileDescriptor.OpenOptions = followingSymlinks ? [.closeOnExec] : [.closeOnExec, .noFollow]
    let descriptor: FileDescriptor
    do {
        descriptor = try FileDescriptor.open(path, .readOnly, options: options, retryOnInterrupt: true)
    } catch let error as Errno {
        throw SystemError("open", errno: error.rawValue, path: path)
    }
    defer { try? descriptor.close() }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: Swift.min(limit, 1 << 16))
    while bytes.count < limit {
        let wanted = Swift.min(chunk.count, limit - bytes.count)
        let n: Int
        do {
            n = try chunk.withUnsafeMutableBytes {
                try descriptor.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[..<wanted]), retryOnInterrupt: true)
            }
        } catch let error as Errno {
            throw SystemError("read", errno: error.rawValue, path: path)
        }
        if n == 0 { break }
        bytes += chunk[..<n]
    }
    return bytes
}
