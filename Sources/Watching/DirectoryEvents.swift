import Ingest

#if os(Linux)
import Glibc

/// What inotify said about the watched folder, reduced to what `watch` acts on.
public enum DirectoryEvent: Equatable, Sendable {
    /// A file was renamed into the folder (`IN_MOVED_TO`) or closed after writing (`IN_CLOSE_WRITE`).
    case completed(String)
    /// A name appeared (`IN_CREATE`): a hard link made complete (`link(2)`, as `gen` does to
    /// never overwrite), or a file just opened for writing, which `IN_CLOSE_WRITE` completes.
    case created(String)
    /// A sub-folder appeared: never input, but its skip is logged.
    case directoryCreated(String)
    /// The kernel queue overflowed (`IN_Q_OVERFLOW`): events were lost, rescan the folder.
    case overflow
    /// The folder was deleted, moved away or unmounted: nothing more can arrive.
    case folderGone(String)
}

/// An inotify watch on one folder, read in large batches of variable-length events.
public final class DirectoryEvents {
    public let fileDescriptor: Int32
    public let path: String
    private let buffer: UnsafeMutableRawPointer
    private let bufferSize = 1 << 16
    private var watch: Int32 = -1

    /// Starts watching `path`: call before listing the folder, so no file falls in between.
    public init(path: String) throws {
        let fd = inotify_init1(Int32(IN_CLOEXEC) | Int32(IN_NONBLOCK))
        guard fd >= 0 else { throw SystemError("inotify_init1", errno: errno, path: path) }
        fileDescriptor = fd
        self.path = path
        buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 8)
        let mask =
            UInt32(IN_CLOSE_WRITE) | UInt32(IN_MOVED_TO) | UInt32(IN_CREATE) | UInt32(IN_DELETE_SELF)
            | UInt32(IN_MOVE_SELF) | UInt32(IN_ONLYDIR)
        watch = inotify_add_watch(fd, path, mask)
        guard watch >= 0 else {
            let code = errno
            close(fd)
            buffer.deallocate()
            throw SystemError("inotify_add_watch", errno: code, path: path)
        }
    }

    deinit {
        close(fileDescriptor)
        buffer.deallocate()
    }

    /// Every event queued now (empty when none); does not block.
    public func read() throws -> [DirectoryEvent] {
        var events: [DirectoryEvent] = []
        while true {
            let n = Glibc.read(fileDescriptor, buffer, bufferSize)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { return events }
                throw SystemError("read", errno: errno, path: path)
            }
            if n == 0 { return events }
            events.append(contentsOf: Self.parse(UnsafeRawBufferPointer(start: buffer, count: n)))
            if n < bufferSize / 2 { return events }
        }
    }

    /// Decodes a buffer of `struct inotify_event` (16-byte header, then `len` bytes of
    /// NUL-padded name).
    static func parse(_ raw: UnsafeRawBufferPointer) -> [DirectoryEvent] {
        var events: [DirectoryEvent] = []
        var offset = 0
        let headerSize = 16
        while offset + headerSize <= raw.count {
            let mask = raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
            let length = Int(raw.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
            let nameBytes = UnsafeRawBufferPointer(rebasing: raw[(offset + headerSize)..<min(raw.count, offset + headerSize + length)])
            let nameEnd = nameBytes.firstIndex(of: 0) ?? nameBytes.count
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: nameBytes[0..<nameEnd]), as: UTF8.self)
            offset += headerSize + length

            if mask & UInt32(IN_Q_OVERFLOW) != 0 {
                events.append(.overflow)
            } else if mask & UInt32(IN_DELETE_SELF) != 0 {
                events.append(.folderGone("the folder was deleted"))
            } else if mask & UInt32(IN_MOVE_SELF) != 0 {
                events.append(.folderGone("the folder was moved away"))
            } else if mask & UInt32(IN_UNMOUNT) != 0 {
                events.append(.folderGone("the folder's filesystem was unmounted"))
            } else if mask & UInt32(IN_IGNORED) != 0 {
                events.append(.folderGone("the folder is no longer watched"))
            } else if mask & (UInt32(IN_CLOSE_WRITE) | UInt32(IN_MOVED_TO)) != 0, !name.isEmpty {
                // A directory moved in is reported too: `FileFeed` logs why it is skipped.
                events.append(.completed(name))
            } else if mask & UInt32(IN_CREATE) != 0, mask & UInt32(IN_ISDIR) == 0, !name.isEmpty {
                events.append(.created(name))
            } else if mask & UInt32(IN_CREATE) != 0, !name.isEmpty {
                events.append(.directoryCreated(name))
            }
        }
        return events
    }
}
#endif
