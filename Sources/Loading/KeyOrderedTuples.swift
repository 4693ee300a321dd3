#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Passes a batch's binary COPY tuples on in the order of their key's first column, a window
/// of bytes at a time, instead of in arrival order.
///
/// Why: a key of random values (a uuid) sends each row of a batch to a different leaf of the
/// key's index. Sorted, consecutive rows land on the same or the next leaf, still in the CPU's
/// caches. `psql \copy` of 10,000-row files into a table of 2,000,000 rows: the server spent
/// 8.5–11.8 µs per row in arrival order, 7.2–7.4 sorted per file (docs/performance.md). The
/// rows and their count are the same; only their order in the heap differs, which SQL never
/// promised. The order is bytewise (a uuid's and a text key's in the C collation; integers
/// sort negative after positive): a locality aid, never relied on for correctness.
///
/// Memory: one buffer of about `window` bytes (plus a tuple bigger than it) and 64 KiB to
/// send from, held only during the COPY. Used by one commit thread at a time: the thread running the COPY owns it.
struct KeyOrderedTuples: ~Copyable {
    /// One complete tuple in the buffer: the first 8 bytes of its key, then where it is. 16
    /// bytes: a tie of prefixes finds the rest of the keys again (`key(of:)`).
    private struct Entry {
        var prefix: UInt64
        var start: Int32
        var length: Int32
    }

    private let keyField: Int
    private let window: Int
    private var buffer: UnsafeMutableRawPointer
    private var capacity: Int
    /// Bytes in `buffer`; `parsed` of them are complete tuples, listed in `entries`.
    private var used = 0
    private var parsed = 0
    private var entries: [Entry] = []
    /// Sorted tuples on their way out, sent whenever full.
    private let staging: UnsafeMutableRawPointer
    private static let stagingSize = 64 << 10

    /// `keyField`: the index of the key's first column among the tuple's fields.
    init(keyField: Int, window: Int) {
        self.keyField = keyField
        self.window = max(window, 1 << 12)
        self.capacity = self.window + (1 << 12)
        self.buffer = .allocate(byteCount: capacity, alignment: 16)
        self.staging = .allocate(byteCount: Self.stagingSize, alignment: 16)
    }

    deinit {
        buffer.deallocate()
        staging.deallocate()
    }

    struct CutTuple: Error, CustomStringConvertible {
        var bytes: Int
        var description: String { "internal error: the COPY tuples ended inside a tuple (\(bytes) bytes left)" }
    }

    /// Takes the next bytes of the tuple stream (tuples may span chunks); sends a sorted window
    /// whenever one is full.
    mutating func feed(_ chunk: UnsafeRawBufferPointer, send: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let base = chunk.baseAddress else { return }
        var offset = 0
        while offset < chunk.count {
            if used == capacity { grow() }
            let step = min(chunk.count - offset, capacity - used)
            (buffer + used).copyMemory(from: base + offset, byteCount: step)
            used += step
            offset += step
            listCompleteTuples()
            if parsed >= window { try sendWindow(send) }
        }
    }

    /// Sends what is left. Throws when the stream ended inside a tuple (an internal error).
    mutating func finish(send: (UnsafeRawBufferPointer) throws -> Void) throws {
        try sendWindow(send)
        guard used == 0 else { throw CutTuple(bytes: used) }
    }

    /// A tuple bigger than the buffer's free room: room for it (kept after, until the COPY ends).
    private mutating func grow() {
        let bigger = UnsafeMutableRawPointer.allocate(byteCount: capacity * 2, alignment: 16)
        bigger.copyMemory(from: buffer, byteCount: used)
        buffer.deallocate()
        buffer = bigger
        capacity *= 2
    }

    /// A field's length at `offset` (big-endian int32), 0 for NULL's -1.
    private static func fieldLength(at offset: Int, in buffer: UnsafeMutableRawPointer) -> Int {
        max(Int(Int32(bitPattern: UInt32(bigEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))), 0)
    }

    /// Lists the complete tuples after `parsed`: a field count, then per field a length (-1:
    /// NULL) and that many bytes.
    private mutating func listCompleteTuples() {
        while used - parsed >= 2 {
            let fields = Int(Int16(bitPattern: UInt16(bigEndian: buffer.loadUnaligned(fromByteOffset: parsed, as: UInt16.self))))
            var at = parsed + 2
            var keyStart = at
            var keyLength = 0
            var complete = true
            for field in 0..<max(fields, 0) {
                guard used - at >= 4 else {
                    complete = false
                    break
                }
                let length = Self.fieldLength(at: at, in: buffer)
                at += 4
                guard used - at >= length else {
                    complete = false
                    break
                }
                if field == keyField { (keyStart, keyLength) = (at, length) }
                at += length
            }
            guard complete else { return }
            entries.append(Entry(prefix: prefix(keyStart, keyLength), start: Int32(parsed), length: Int32(at - parsed)))
            parsed = at
        }
    }

    /// The key's first 8 bytes as a big-endian number, zero-padded: compares as the bytes do.
    private func prefix(_ start: Int, _ length: Int) -> UInt64 {
        if length >= 8 { return UInt64(bigEndian: buffer.loadUnaligned(fromByteOffset: start, as: UInt64.self)) }
        var value: UInt64 = 0
        for i in 0..<8 { value = value << 8 | (i < length ? UInt64(buffer.load(fromByteOffset: start + i, as: UInt8.self)) : 0) }
        return value
    }

    /// Where the key's bytes are in a complete tuple starting at `start`.
    private static func key(of start: Int, field: Int, in buffer: UnsafeMutableRawPointer) -> (start: Int, length: Int) {
        var at = start + 2
        for _ in 0..<field { at += 4 + fieldLength(at: at, in: buffer) }
        return (at + 4, fieldLength(at: at, in: buffer))
    }

    /// Bytewise order of two keys whose first 8 bytes are equal; shorter first on a tie.
    private static func precedes(_ a: Entry, _ b: Entry, field: Int, in buffer: UnsafeMutableRawPointer) -> Bool {
        let keyA = key(of: Int(a.start), field: field, in: buffer)
        let keyB = key(of: Int(b.start), field: field, in: buffer)
        let common = min(keyA.length, keyB.length)
        let order = common > 8 ? memcmp(buffer + keyA.start + 8, buffer + keyB.start + 8, common - 8) : 0
        return order != 0 ? order < 0 : keyA.length < keyB.length
    }

    /// Sends the listed tuples in key order and keeps the incomplete rest at the buffer's start.
    private mutating func sendWindow(_ send: (UnsafeRawBufferPointer) throws -> Void) throws {
        let (base, field) = (buffer, keyField)
        entries.sort { a, b in a.prefix != b.prefix ? a.prefix < b.prefix : Self.precedes(a, b, field: field, in: base) }
        // Gathered into runs of 64 KiB: each send is a CopyData message of its own, and one per
        // tuple cost load ~0.2 µs a row (and the server a message each).
        var filled = 0
        for entry in entries {
            let length = Int(entry.length)
            if filled + length > Self.stagingSize && filled > 0 {
                try send(UnsafeRawBufferPointer(start: staging, count: filled))
                filled = 0
            }
            if length > Self.stagingSize {
                try send(UnsafeRawBufferPointer(start: base + Int(entry.start), count: length))
                continue
            }
            (staging + filled).copyMemory(from: base + Int(entry.start), byteCount: length)
            filled += length
        }
        if filled > 0 { try send(UnsafeRawBufferPointer(start: staging, count: filled)) }
        entries.removeAll(keepingCapacity: true)
        let rest = used - parsed
        if rest > 0 { buffer.copyMemory(from: buffer + parsed, byteCount: rest) }
        used = rest
        parsed = 0
    }
}
