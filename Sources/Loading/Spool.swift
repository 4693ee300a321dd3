import Ingest
import Postgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Append-only storage for the lines of a batch: in memory up to a limit, then in an unlinked
/// temporary file, so a 1 GB source file does not become 1 GB of resident memory in `load`.
public final class Spool {
    public let memoryLimit: Int
    public let directory: String
    private var memory: [UInt8] = []
    private var fd: Int32 = -1
    public private(set) var byteCount = 0
    public private(set) var lineCount = 0

    public init(memoryLimit: Int = 8 << 20, directory: String = Spool.defaultDirectory) {
        self.memoryLimit = memoryLimit
        self.directory = directory
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    public static var defaultDirectory: String {
        if let dir = getenv("TMPDIR") { return String(cString: dir) }
        return "/tmp"
    }

    /// Appends one line; `line` must not contain a newline (one is added).
    public func appendLine(_ line: UnsafeRawBufferPointer) throws {
        memory.append(contentsOf: line)
        memory.append(0x0A)
        byteCount += line.count + 1
        lineCount += 1
        if memory.count >= (fd >= 0 ? 1 << 16 : memoryLimit) { try spill() }
    }

    /// Appends whatever `build` writes (raw bytes, not counted as lines): COPY rows made once
    /// on arrival go straight into the spool, with no intermediate buffer.
    public func append(_ build: (inout [UInt8]) -> Void) throws {
        let before = memory.count
        build(&memory)
        byteCount += memory.count - before
        if memory.count >= (fd >= 0 ? 1 << 16 : memoryLimit) { try spill() }
    }

    /// Calls `body` with the spool's bytes in order, in chunks of up to 256 KiB (disk) or all
    /// at once (memory); chunk boundaries fall anywhere.
    public func forEachChunk(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        if fd >= 0 {
            let copy = dup(fd)
            guard copy >= 0 else { throw SystemError("dup", errno: errno) }
            defer { close(copy) }
            let size = 1 << 18
            let chunk = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
            defer { chunk.deallocate() }
            var offset: off_t = 0
            let onDisk = off_t(byteCount - memory.count)
            while offset < onDisk {
                let n = pread(copy, chunk, min(size, Int(onDisk - offset)), offset)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw SystemError("pread", errno: n < 0 ? errno : EIO) }
                try body(UnsafeRawBufferPointer(start: chunk, count: n))
                offset += off_t(n)
            }
        }
        try memory.withUnsafeBytes { if $0.count > 0 { try body($0) } }
    }

    private func spill() throws {
        let spoolPath = directory + "/.load-spool-XXXXXX"
        if fd < 0 {
            fd = try waitingForSpace(at: spoolPath, needing: memory.count) {
                var template = Array(spoolPath.utf8CString)
                let made = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
                guard made >= 0 else { throw SystemError("mkstemp", errno: errno, path: directory) }
                template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
                return made
            }
        }
        // A full disk pauses the spool (and so the reading of stdin) until space comes back.
        try memory.withUnsafeBytes { try writeAllWaitingForSpace(fd, $0, path: spoolPath) }
        memory.removeAll(keepingCapacity: false)
        memory.reserveCapacity(1 << 16)
    }

    /// Calls `body` with every line in order (without its newline).
    public func forEachLine(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        if fd >= 0 {
            guard lseek(fd, 0, SEEK_SET) == 0 else { throw SystemError("lseek", errno: errno) }
            let copy = dup(fd)
            guard copy >= 0 else { throw SystemError("dup", errno: errno) }
            defer { close(copy) }
            let reader = LineReader(fd: copy, maxLineLength: Int.max / 2)
            var read = 0
            let onDisk = byteCount - memory.count
            while read < onDisk, let item = try reader.next() {
                if case .line(let line) = item {
                    read += line.count + 1
                    try body(line)
                }
            }
            _ = lseek(fd, 0, SEEK_END)
        }
        try memory.withUnsafeBytes { all in
            var start = 0
            while start < all.count {
                guard let nl = memchr(all.baseAddress! + start, 0x0A, all.count - start) else { break }
                let end = all.baseAddress!.distance(to: UnsafeRawPointer(nl))
                try body(UnsafeRawBufferPointer(rebasing: all[start..<end]))
                start = end + 1
            }
        }
    }
}
