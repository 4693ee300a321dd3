#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The binary COPY tuple layout: a big-endian field count (int16), then per field a big-endian
/// length (int32, -1 for NULL) and that many bytes. The one reader of it in load: the sorted
/// runs list their tuples with it, and their merge walks them with it.
enum TupleLayout {
    /// The length of the tuple at `p` when all of it is among the `available` bytes; nil if not.
    static func length(at p: UnsafeRawPointer, available: Int) -> Int? {
        guard available >= 2 else { return nil }
        let fields = Int(Int16(bitPattern: UInt16(bigEndian: p.loadUnaligned(as: UInt16.self))))
        var at = 2
        for _ in 0..<max(fields, 0) {
            guard available - at >= 4 else { return nil }
            let length = fieldLength(p, at)
            at += 4
            guard available - at >= length else { return nil }
            at += length
        }
        return at
    }

    /// A field's length at `offset`, 0 for NULL's -1.
    @inline(__always)
    static func fieldLength(_ p: UnsafeRawPointer, _ offset: Int) -> Int {
        max(Int(Int32(bitPattern: UInt32(bigEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))), 0)
    }

    /// Where field `field`'s bytes are in the complete tuple at `p` (length 0 for NULL, or
    /// when the tuple has fewer fields).
    @inline(__always)
    static func field(_ field: Int, of p: UnsafeRawPointer) -> (start: Int, length: Int) {
        let fields = Int(Int16(bitPattern: UInt16(bigEndian: p.loadUnaligned(as: UInt16.self))))
        guard field < fields else { return (2, 0) }
        var at = 2
        for _ in 0..<field { at += 4 + fieldLength(p, at) }
        return (at + 4, fieldLength(p, at))
    }

    /// The key's first 8 bytes as a big-endian number, zero-padded: compares as the bytes do.
    @inline(__always)
    static func prefix(of p: UnsafeRawPointer, key: (start: Int, length: Int)) -> UInt64 {
        if key.length >= 8 { return UInt64(bigEndian: p.loadUnaligned(fromByteOffset: key.start, as: UInt64.self)) }
        var value: UInt64 = 0
        for i in 0..<8 { value = value << 8 | (i < key.length ? UInt64(p.load(fromByteOffset: key.start + i, as: UInt8.self)) : 0) }
        return value
    }

    /// Bytewise order of the keys (field `field`) of two complete tuples whose prefixes tie;
    /// the shorter first when one key begins the other.
    static func keyPrecedes(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, field: Int) -> Bool {
        let keyA = self.field(field, of: a)
        let keyB = self.field(field, of: b)
        let common = min(keyA.length, keyB.length)
        let order = common > 8 ? memcmp(a + keyA.start + 8, b + keyB.start + 8, common - 8) : 0
        return order != 0 ? order < 0 : keyA.length < keyB.length
    }
}

/// A file's binary COPY tuples, made as its records arrive, kept as runs sorted by the key's
/// first column: in memory until they hold `runBytes`, then sorted and written to a spool as
/// one run; the last run stays in memory until the COPY, which merges the runs
/// (``KeyOrderedTuples``). Without a key, the tuples stay in arrival order.
///
/// Sorting here, on arrival, rather than at the COPY: a COPY then merges a whole 10,000-row
/// file in one order from 8 KiB per run, where sorting 512 KiB windows at the COPY held that
/// much per commit session and gave a file two or more orders.
///
/// Filled by the reading thread; then handed, with its file, to one commit thread, which alone
/// reads it (and sorts its last run) from then on.
final class TupleRuns {
    /// One tuple of the run in memory: the first 8 bytes of its key, then where it is.
    struct Entry {
        var prefix: UInt64
        var start: Int32
        var length: Int32
    }

    /// The key's first column among the tuple's fields; nil: arrival order.
    let keyField: Int?
    let runBytes: Int
    /// The runs written so far, one after another; each ends at its entry of `runEnds`.
    let disk: Spool
    @exclusivity(unchecked) private(set) var runEnds: [Int] = []
    @exclusivity(unchecked) private var buffer: UnsafeMutableRawPointer
    @exclusivity(unchecked) private var capacity: Int
    /// Bytes of the run in memory.
    @exclusivity(unchecked) private(set) var used = 0
    @exclusivity(unchecked) private var entries: [Entry] = []

    init(keyField: Int?, runBytes: Int, directory: String) {
        self.keyField = keyField
        self.runBytes = max(runBytes, 1 << 10)
        // Written whole runs at a time: the spool's own memory is only its 32 KiB write buffer.
        self.disk = Spool(memoryLimit: 0, directory: directory)
        // Nothing until the first tuple (see ``Spool/init(memoryLimit:directory:)``).
        self.capacity = 0
        self.buffer = .allocate(byteCount: 0, alignment: 16)
    }

    deinit { buffer.deallocate() }

    /// Bytes of every tuple held.
    var byteCount: Int { disk.byteCount + used }
    /// Bytes of memory held now: the run's buffer and its entries, and the spool's buffer.
    var residentBytes: Int { capacity + entries.capacity * MemoryLayout<Entry>.stride + disk.residentBytes }

    /// No more tuples (the file is complete): the run in memory keeps only its bytes and
    /// entries, and the spool gives its buffer back (``Spool/seal()``).
    func seal() throws {
        try disk.seal()
        if capacity > used {
            let fitted = UnsafeMutableRawPointer.allocate(byteCount: used, alignment: 16)
            fitted.copyMemory(from: buffer, byteCount: used)
            buffer.deallocate()
            buffer = fitted
            capacity = used
        }
        if entries.capacity > entries.count {
            // A new array, not a conversion of a slice, which may keep the old storage.
            var fitted: [Entry] = []
            fitted.reserveCapacity(entries.count)
            fitted.append(contentsOf: entries)
            entries = fitted
        }
    }

    /// Appends the tuple `write` stores at the pointer it is given, at most `maxCount` bytes; it
    /// returns how many it stored (0 keeps nothing).
    func append(atMost maxCount: Int, _ write: (UnsafeMutableRawPointer) -> Int) throws {
        if used + maxCount > capacity { grow(to: used + maxCount) }
        let at = buffer + used
        let written = write(at)
        precondition(written <= maxCount, "wrote past the space reserved")
        guard written > 0 else { return }
        if let keyField {
            let key = TupleLayout.field(keyField, of: at)
            entries.append(Entry(prefix: TupleLayout.prefix(of: at, key: key), start: Int32(used), length: Int32(written)))
        }
        used += written
        if used >= runBytes { try writeRun() }
    }

    private func grow(to needed: Int) {
        growBuffer(&buffer, capacity: &capacity, keeping: used, toHold: needed)
    }

    /// Sorts the run in memory by key (a no-op without a key). By the keys' first 8 bytes with
    /// a radix sort, then each group of tied prefixes by the whole key; both keep arrival
    /// order among equal keys. Callgrind of load, 10,000 rows with uuid keys: ~380 instructions
    /// a row in the standard library's comparison sort, ~160 in the radix sort.
    private func sortRun() {
        guard let field = keyField else { return }
        let base = UnsafeRawPointer(buffer)
        let precedes = { (a: Entry, b: Entry) -> Bool in
            a.prefix != b.prefix ? a.prefix < b.prefix : TupleLayout.keyPrecedes(base + Int(a.start), base + Int(b.start), field: field)
        }
        // Below a few dozen tuples the radix sort's 8 passes over 256 counts cost more.
        guard entries.count >= 64 else {
            entries.sort(by: precedes)
            return
        }
        TupleRuns.radixSort(&entries)
        entries.withUnsafeMutableBufferPointer { sorted in
            var i = 0
            while i < sorted.count {
                var j = i + 1
                while j < sorted.count && sorted[j].prefix == sorted[i].prefix { j += 1 }
                if j - i > 1 { sorted[i..<j].sort(by: precedes) }
                i = j
            }
        }
    }

    /// Sorts `entries` by `prefix`, stable: least significant byte first, one pass a byte,
    /// skipping a byte every entry shares (a sequential integer key needs two or three).
    ///
    /// The second array and the byte counts live only for the sort (the stack, or the heap
    /// when big), not in each file's runs: a batch of many small files would otherwise hold
    /// ~19 KB more a file against load's 25 MB. They cannot be one shared buffer either: the
    /// reading thread (a full run) and a commit thread (the last run) both sort.
    static func radixSort(_ entries: inout [Entry]) {
        let n = entries.count
        guard n > 1 else { return }
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: 8 * 256) { counts in
            withUnsafeTemporaryAllocation(of: Entry.self, capacity: n) { scratch in
                let c = counts.baseAddress!
                c.initialize(repeating: 0, count: 8 * 256)
                let b = scratch.baseAddress!
                b.initialize(repeating: Entry(prefix: 0, start: 0, length: 0), count: n)
                entries.withUnsafeMutableBufferPointer { a in
                    var source = a.baseAddress!
                    var target = b
                    for k in 0..<n {
                        var prefix = source[k].prefix
                        for byte in 0..<8 {
                            c[byte &<< 8 | Int(prefix & 0xFF)] &+= 1
                            prefix &>>= 8
                        }
                    }
                    var inScratch = false
                    for byte in 0..<8 {
                        let shift = UInt64(byte &* 8)
                        let count = c + byte &<< 8
                        if Int(count[Int((source[0].prefix &>> shift) & 0xFF)]) == n { continue }
                        var sum: Int32 = 0
                        for d in 0..<256 {
                            let here = count[d]
                            count[d] = sum
                            sum &+= here
                        }
                        for k in 0..<n {
                            let entry = source[k]
                            let d = Int((entry.prefix &>> shift) & 0xFF)
                            target[Int(count[d])] = entry
                            count[d] &+= 1
                        }
                        swap(&source, &target)
                        inScratch.toggle()
                    }
                    if inScratch { a.baseAddress!.update(from: b, count: n) }
                }
            }
        }
    }

    /// The run in memory, sorted, to the spool.
    private func writeRun() throws {
        if keyField == nil {
            try disk.append(atMost: used) { at in
                at.copyMemory(from: buffer, byteCount: used)
                return used
            }
        } else {
            sortRun()
            for entry in entries {
                let length = Int(entry.length)
                try disk.append(atMost: length) { at in
                    at.copyMemory(from: buffer + Int(entry.start), byteCount: length)
                    return length
                }
            }
            entries.removeAll(keepingCapacity: true)
        }
        runEnds.append(disk.byteCount)
        used = 0
        // A tuple far bigger than a run made the buffer grow: give that memory back.
        if capacity > runBytes * 2 {
            buffer.deallocate()
            capacity = runBytes * 2
            buffer = .allocate(byteCount: capacity, alignment: 16)
        }
    }

    /// Calls `body` with every tuple's bytes in the order held (runs one after another), in
    /// chunks that may cut tuples anywhere: the COPY of a table without a key.
    func forEachChunk(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        try disk.forEachChunk(body)
        if used > 0 { try body(UnsafeRawBufferPointer(start: buffer, count: used)) }
    }

    /// The run still in memory, sorted now (by the commit thread that holds the file), as its
    /// tuples' places in order, with the bytes they point into.
    func memoryRun() -> (base: UnsafeRawPointer, entries: [Entry]) {
        sortRun()
        return (UnsafeRawPointer(buffer), entries)
    }
}
