import Ingest
import Postgres
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Append-only storage for the lines of a batch: in memory up to a limit, then in an unlinked
/// temporary file, so a 1 GB source file does not become 1 GB of resident memory in `load`.
///
/// The bytes sit in a raw buffer, not an `[UInt8]`: appending to an array held by a class costs
/// a dynamic exclusivity check and a uniqueness check per call (~5 % of load's instructions
/// per row in perf), and the buffer keeps its capacity after spilling, so it is not faulted in
/// again for every 64 KiB written.
public final class Spool {
    public let memoryLimit: Int
    public let directory: String
    // `@exclusivity(unchecked)`: a spool is used by one thread at a time (the reading thread,
    // then the commit thread it is handed to), and the dynamic checks of these fields were 2
    // per line appended, ~300 instructions of load's row (callgrind).
    @exclusivity(unchecked) private var buffer: UnsafeMutableRawPointer
    @exclusivity(unchecked) private var capacity: Int
    /// Bytes in `buffer` (not yet on disk).
    @exclusivity(unchecked) private var used = 0
    @exclusivity(unchecked) private var fd: Int32 = -1
    @exclusivity(unchecked) public private(set) var byteCount = 0
    @exclusivity(unchecked) public private(set) var lineCount = 0

    public init(memoryLimit: Int = 8 << 20, directory: String = Spool.defaultDirectory) {
        self.memoryLimit = memoryLimit
        self.directory = directory
        // Nothing until the first append: a batch of thousands of small files has three spools
        // a file, most of them never written (rejects) or only to disk (tuples).
        self.capacity = 0
        self.buffer = .allocate(byteCount: 0, alignment: 16)
    }

    deinit {
        if fd >= 0 { SpoolFiles.shared.give(fd, directory: directory) }
        buffer.deallocate()
    }

    public static var defaultDirectory: String {
        if let dir = getenv("TMPDIR") { return String(cString: dir) }
        return "/tmp"
    }

    /// Room for `count` more bytes in memory.
    @inline(__always)
    private func reserve(_ count: Int) {
        if used + count > capacity { grow(to: used + count) }
    }

    private func grow(to needed: Int) {
        growBuffer(&buffer, capacity: &capacity, keeping: used, toHold: needed)
    }

    @inline(__always)
    private func spillIfFull() throws {
        if used >= (fd >= 0 ? Spool.diskChunk : memoryLimit) { try spill() }
    }

    /// Appends one line; `line` must not contain a newline (one is added).
    public func appendLine(_ line: UnsafeRawBufferPointer) throws {
        reserve(line.count + 1)
        if let base = line.baseAddress { (buffer + used).copyMemory(from: base, byteCount: line.count) }
        buffer.storeBytes(of: 0x0A, toByteOffset: used + line.count, as: UInt8.self)
        used += line.count + 1
        byteCount += line.count + 1
        lineCount += 1
        try spillIfFull()
    }

    /// Appends what `write` stores at the pointer it is given, at most `maxCount` bytes; it returns
    /// how many it stored (0 keeps nothing). COPY tuples made once on arrival go straight into
    /// the spool, with no intermediate buffer.
    public func append(atMost maxCount: Int, _ write: (UnsafeMutableRawPointer) -> Int) throws {
        reserve(maxCount)
        let written = write(buffer + used)
        precondition(written <= maxCount, "wrote past the space reserved")
        used += written
        byteCount += written
        try spillIfFull()
    }

    /// Calls `body` with the spool's bytes in order, in chunks of up to 64 KiB (disk) or all
    /// at once (memory); chunk boundaries fall anywhere.
    public func forEachChunk(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        if fd >= 0 {
            let copy = dup(fd)
            guard copy >= 0 else { throw SystemError("dup", errno: errno) }
            defer { close(copy) }
            let size = Spool.diskChunk
            let chunk = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
            defer { chunk.deallocate() }
            var offset: off_t = 0
            let onDisk = off_t(byteCount - used)
            while offset < onDisk {
                let n = pread(copy, chunk, min(size, Int(onDisk - offset)), offset)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw SystemError("pread", errno: n < 0 ? errno : EIO) }
                try body(UnsafeRawBufferPointer(start: chunk, count: n))
                offset += off_t(n)
            }
        }
        if used > 0 { try body(UnsafeRawBufferPointer(start: buffer, count: used)) }
    }

    /// Copies up to `count` of the spool's bytes from `offset` (on disk, then in memory) to
    /// `destination`; returns how many (0 at the end). A sorted run's reader: random access.
    public func read(at offset: Int, into destination: UnsafeMutableRawPointer, count: Int) throws -> Int {
        let onDisk = byteCount - used
        var done = 0
        while done < count {
            let at = offset + done
            if at < onDisk {
                let n = pread(fd, destination + done, min(count - done, onDisk - at), off_t(at))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw SystemError("pread", errno: n < 0 ? errno : EIO) }
                done += n
            } else {
                let n = min(count - done, used - (at - onDisk))
                guard n > 0 else { break }
                (destination + done).copyMemory(from: buffer + (at - onDisk), byteCount: n)
                done += n
            }
        }
        return done
    }

    private func spill() throws {
        let spoolPath = directory + "/.load-spool-XXXXXX"
        if fd < 0, let reused = SpoolFiles.shared.take(directory: directory) {
            fd = reused
            guard lseek(fd, 0, SEEK_SET) == 0 else { throw SystemError("lseek", errno: errno, path: directory) }
        }
        if fd < 0 {
            fd = try waitingForSpace(at: spoolPath, needing: used) {
                var template = Array(spoolPath.utf8CString)
                let made = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
                guard made >= 0 else { throw SystemError("mkstemp", errno: errno, path: directory) }
                template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
                return made
            }
        }
        // A full disk pauses the spool (and so the reading of stdin) until space comes back.
        try writeAllWaitingForSpace(fd, UnsafeRawBufferPointer(start: buffer, count: used), path: spoolPath)
        used = 0
        // On disk from now on, in 64 KiB writes: give the rest of the memory back.
        if capacity > Spool.diskChunk * 2 {
            buffer.deallocate()
            capacity = Spool.diskChunk * 2
            buffer = .allocate(byteCount: capacity, alignment: 16)
        }
    }

    /// Bytes written per `write` once the spool is on disk.
    static let diskChunk = 1 << 15

    /// No more appends (the file is complete): a spool on disk writes the rest and gives its
    /// buffer back, one in memory keeps only what it holds. A complete file then waits for its
    /// commit with its bytes alone, not with 4–64 KiB of buffer per spool: 3,000 files of 5 rows
    /// in one stream peaked load at 75 MB before (release build), 23.7 MB since.
    public func seal() throws {
        if fd >= 0 {
            if used > 0 { try spill() }
            resize(to: 0)
        } else if capacity > used {
            resize(to: used)
        }
    }

    private func resize(to size: Int) {
        let fitted = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        fitted.copyMemory(from: buffer, byteCount: min(used, size))
        buffer.deallocate()
        buffer = fitted
        capacity = size
    }

    /// Bytes of memory the spool holds now, written or not: what counts toward load's
    /// resident memory (``LoaderConfiguration/batchMemory``).
    public var residentBytes: Int { capacity }

    /// Bytes appended but not on disk (in memory).
    public var unwrittenBytes: Int { used }

    /// Calls `body` with every line in order (without its newline).
    public func forEachLine(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        if fd >= 0 {
            guard lseek(fd, 0, SEEK_SET) == 0 else { throw SystemError("lseek", errno: errno) }
            let copy = dup(fd)
            guard copy >= 0 else { throw SystemError("dup", errno: errno) }
            defer { close(copy) }
            let reader = LineReader(fd: copy, maxLineLength: Int.max / 2)
            var read = 0
            let onDisk = byteCount - used
            while read < onDisk, let item = try reader.next() {
                if case .line(let line) = item {
                    read += line.count + 1
                    try body(line)
                }
            }
            // The file may be longer (a reused one): the next write goes after this spool's bytes.
            _ = lseek(fd, off_t(onDisk), SEEK_SET)
        }
        do {
            let all = UnsafeRawBufferPointer(start: buffer, count: used)
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

/// Unlinked temporary files that spools reuse, overwriting what an earlier spool left: writing
/// over pages already in the page cache took 5.5 ms of CPU for 37.5 MB here against 130-180 ms
/// for new pages (and new dirty pages on a slow disk throttle the writer), which made the
/// spools' writes ~17 % of load's CPU per row before.
final class SpoolFiles: Sendable {
    static let shared = SpoolFiles()
    /// Files kept for reuse at most; more are closed (and so freed).
    static let maxIdle = 16
    /// A file that grew larger than this (a big source file's spool) is closed, not kept: at
    /// most 16 × 8 MiB of disk stay taken between batches.
    static let maxKeptBytes = 8 << 20

    private struct Idle {
        var directory: String
        var fd: Int32
    }
    private let idle = Mutex<[Idle]>([])

    /// A file in `directory` to write over from its start, if one is idle.
    func take(directory: String) -> Int32? {
        idle.withLock { list in
            guard let i = list.lastIndex(where: { $0.directory == directory }) else { return nil }
            return list.remove(at: i).fd
        }
    }

    /// Takes back a spool's file, or closes it.
    func give(_ fd: Int32, directory: String) {
        var status = stat()
        let kept =
            fstat(fd, &status) == 0 && Int(status.st_size) <= SpoolFiles.maxKeptBytes
            && idle.withLock { list in
                guard list.count < SpoolFiles.maxIdle else { return false }
                list.append(Idle(directory: directory, fd: fd))
                return true
            }
        if !kept { close(fd) }
    }
}

/// Doubles `buffer` (an allocation of `capacity` bytes) until it holds `needed`, keeping its
/// first `used` bytes: the growth of a spool's and of a tuple run's memory.
func growBuffer(_ buffer: inout UnsafeMutableRawPointer, capacity: inout Int, keeping used: Int, toHold needed: Int) {
    var size = max(capacity * 2, 256)
    while size < needed { size *= 2 }
    let bigger = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
    bigger.copyMemory(from: buffer, byteCount: used)
    buffer.deallocate()
    buffer = bigger
    capacity = size
}
