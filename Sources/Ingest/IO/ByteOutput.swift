#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Buffers output bytes and writes them to a file descriptor in large `write(2)` calls.
///
/// One `write(2)` per 64 KiB instead of one per line: 11.7 M vs 1.0 M lines/s measured here.
/// Flush at every file or batch boundary so a downstream stage is never kept waiting.
public final class ByteOutput {
    public let fd: Int32
    /// `@exclusivity(unchecked)`: an output belongs to one thread, and a dynamic check per row
    /// (`flushIfFull`, `&output.bytes`) cost ~150 instructions each (callgrind of `validate`).
    /// It holds in this module only: `&output.bytes` in another one is still checked (~80
    /// instructions), so a per-row loop there writes to a local buffer and swaps it in to flush.
    @exclusivity(unchecked) public var bytes: [UInt8]
    public let flushThreshold: Int

    /// Takes the bytes instead of `fd` when set.
    private let sink: ((UnsafeRawBufferPointer) throws -> Void)?
    /// Takes the buffer itself instead of `fd` when set (see `init(flushThreshold:handOff:)`).
    private let handOff: ((inout [UInt8]) throws -> Void)?

    public init(fd: Int32, flushThreshold: Int = 1 << 16) {
        self.fd = fd
        self.flushThreshold = flushThreshold
        self.bytes = []
        self.bytes.reserveCapacity(flushThreshold + 4096)
        self.sink = nil
        self.handOff = nil
    }

    /// Hands each flushed buffer to `sink` instead of writing it: one stage feeding the next
    /// in the same process (`validate FILE.csv`) with no file or pipe between them.
    public init(flushThreshold: Int = 1 << 16, sink: @escaping (UnsafeRawBufferPointer) throws -> Void) {
        self.fd = -1
        self.flushThreshold = flushThreshold
        self.bytes = []
        self.bytes.reserveCapacity(flushThreshold + 4096)
        self.sink = sink
        self.handOff = nil
    }

    /// Hands each flushed buffer over whole to `handOff`, which swaps in an empty one (another
    /// thread then reads the lines without a copy: `CSVEmitterThread`). No default threshold, so
    /// a bare trailing closure (`ByteOutput { … }`) still means `sink`.
    public init(handingOverAt flushThreshold: Int, to handOff: @escaping (inout [UInt8]) throws -> Void) {
        self.fd = -1
        self.flushThreshold = flushThreshold
        self.bytes = []
        self.bytes.reserveCapacity(flushThreshold + 4096)
        self.sink = nil
        self.handOff = handOff
    }

    /// Writes the buffer out if it has passed the threshold.
    @inline(__always)
    public func flushIfFull() throws {
        if bytes.count >= flushThreshold { try flush() }
    }

    /// Writes every buffered byte, handling partial writes and EINTR.
    public func flush() throws {
        guard !bytes.isEmpty else { return }
        if let handOff {
            try handOff(&bytes)
            return
        }
        try bytes.withUnsafeBytes { raw in
            if let sink { try sink(raw) } else { try writeAll(fd, raw) }
        }
        bytes.removeAll(keepingCapacity: bytes.capacity <= flushThreshold * 4)
    }
}

/// Writes a line to stderr at once (unbuffered), for logs and progress.
public func writeStandardError(_ text: String) {
    var line = text
    if !line.hasSuffix("\n") { line += "\n" }
    var copy = line
    copy.withUTF8 { buf in
        _ = try? writeAll(2, UnsafeRawBufferPointer(buf))
    }
}
