#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Passes a batch's binary COPY tuples on in the order of their key's first column: it merges
/// the sorted runs the files' ``TupleRuns`` made on arrival, up to `fanIn` runs at a time.
///
/// Why: a key of random values (a uuid) sends each row of a batch to a different leaf of the
/// key's index. Sorted, consecutive rows land on the same or the next leaf, still in the CPU's
/// caches. `psql \copy` of 10,000-row files into a table of 2,000,000 rows: the server spent
/// 8.5–11.8 µs per row in arrival order, 7.2–7.4 sorted per file (docs/performance.md). The
/// rows and their count are the same; only their order in the heap differs, which SQL never
/// promised. The order is bytewise (a uuid's and a text key's in the C collation; integers
/// sort negative after positive): a locality aid, never relied on for correctness.
///
/// Memory, held only during the COPY: 8 KiB per run read from the spool (more for a tuple
/// bigger than that), `fanIn` of them at most, and 64 KiB to send from. 16 runs of 64 KiB
/// cover 1 MiB of tuples in one order: a 10,000-row file of the default contract (~850 KB)
/// whole. Used by the commit thread running the COPY.
struct KeyOrderedTuples: ~Copyable {
    /// Runs merged at once; a batch with more is sent as consecutive merges of this many.
    static let fanIn = 16
    private static let stagingSize = 64 << 10

    private let keyField: Int
    /// Sorted tuples on their way out, sent whenever full.
    private let staging: UnsafeMutableRawPointer
    private var filled = 0

    /// `keyField`: the index of the key's first column among the tuple's fields.
    init(keyField: Int) {
        self.keyField = keyField
        self.staging = .allocate(byteCount: Self.stagingSize, alignment: 16)
    }

    deinit { staging.deallocate() }

    struct CutTuple: Error, CustomStringConvertible {
        var bytes: Int
        var description: String { "internal error: a sorted run of COPY tuples ended inside a tuple (\(bytes) bytes left)" }
    }

    /// Sends every tuple of `files`, merged by key `fanIn` runs at a time (runs in the files'
    /// order), in sends of up to 64 KiB.
    mutating func send(_ files: [TupleRuns], _ send: (UnsafeRawBufferPointer) throws -> Void) throws {
        var runs: [RunCursor] = []
        for file in files {
            var start = 0
            for end in file.runEnds {
                runs.append(SpooledRun(file.disk, from: start, to: end, keyField: keyField))
                start = end
            }
            if file.used > 0 {
                let (base, entries) = file.memoryRun()
                runs.append(MemoryRun(base: base, entries: entries))
            }
            // One file at a time: a spooled run's buffer is allocated only when it is merged.
            while runs.count >= Self.fanIn {
                try merge(Array(runs.prefix(Self.fanIn)), send)
                runs.removeFirst(Self.fanIn)
            }
        }
        if !runs.isEmpty { try merge(runs, send) }
        if filled > 0 { try send(UnsafeRawBufferPointer(start: staging, count: filled)) }
        filled = 0
    }

    private mutating func merge(_ runs: [RunCursor], _ send: (UnsafeRawBufferPointer) throws -> Void) throws {
        var live: [RunCursor] = []
        for run in runs where try run.advance() { live.append(run) }
        let field = keyField
        while !live.isEmpty {
            // Linear: at most 16 heads, most decided by their 8-byte prefixes.
            var best = 0
            for k in 1..<live.count {
                let (a, b) = (live[k], live[best])
                if a.prefix != b.prefix ? a.prefix < b.prefix : TupleLayout.keyPrecedes(a.head, b.head, field: field) { best = k }
            }
            try emit(UnsafeRawBufferPointer(start: live[best].head, count: live[best].length), send)
            if try !live[best].advance() { live.remove(at: best) }
        }
    }

    /// Gathers tuples into runs of 64 KiB: each send is a CopyData message of its own, and one
    /// per tuple cost load ~0.2 µs a row (and the server a message each).
    private mutating func emit(_ tuple: UnsafeRawBufferPointer, _ send: (UnsafeRawBufferPointer) throws -> Void) throws {
        if filled + tuple.count > Self.stagingSize && filled > 0 {
            try send(UnsafeRawBufferPointer(start: staging, count: filled))
            filled = 0
        }
        if tuple.count > Self.stagingSize {
            try send(tuple)
            return
        }
        (staging + filled).copyMemory(from: tuple.baseAddress!, byteCount: tuple.count)
        filled += tuple.count
    }
}

/// One sorted run being merged: its head tuple, until `advance` finds none left.
private class RunCursor {
    var head: UnsafeRawPointer = UnsafeRawPointer(bitPattern: 1)!
    var length = 0
    var prefix: UInt64 = 0

    /// Moves to the next tuple; false when the run has no more.
    func advance() throws -> Bool { false }
}

/// A run in a file's spool, read 8 KiB (or one tuple) at a time.
private final class SpooledRun: RunCursor {
    private let spool: Spool
    private let keyField: Int
    /// Where the next unread byte of the run is in the spool, and where the run ends.
    private var next: Int
    private let end: Int
    private var buffer: UnsafeMutableRawPointer?
    private var capacity = 8 << 10
    /// The head tuple's start in `buffer`, and the bytes read into it.
    private var start = 0
    private var filled = 0

    init(_ spool: Spool, from: Int, to end: Int, keyField: Int) {
        self.spool = spool
        self.next = from
        self.end = end
        self.keyField = keyField
    }

    deinit { buffer?.deallocate() }

    override func advance() throws -> Bool {
        if buffer == nil { buffer = .allocate(byteCount: capacity, alignment: 16) }
        start += length
        length = 0
        while true {
            let at = buffer! + start
            if let count = TupleLayout.length(at: at, available: filled - start) {
                head = UnsafeRawPointer(at)
                length = count
                prefix = TupleLayout.prefix(of: at, key: TupleLayout.field(keyField, of: at))
                return true
            }
            if next == end {
                guard filled == start else { throw KeyOrderedTuples.CutTuple(bytes: filled - start) }
                return false
            }
            // Keep the incomplete head at the buffer's start, make room for a tuple bigger
            // than the buffer, and read on.
            let rest = filled - start
            if rest > 0 && start > 0 { buffer!.copyMemory(from: buffer! + start, byteCount: rest) }
            (start, filled) = (0, rest)
            if filled == capacity {
                let bigger = UnsafeMutableRawPointer.allocate(byteCount: capacity * 2, alignment: 16)
                bigger.copyMemory(from: buffer!, byteCount: filled)
                buffer!.deallocate()
                buffer = bigger
                capacity *= 2
            }
            let n = try spool.read(at: next, into: buffer! + filled, count: min(capacity - filled, end - next))
            guard n > 0 else { throw KeyOrderedTuples.CutTuple(bytes: filled) }
            next += n
            filled += n
        }
    }
}

/// The run a file still held in memory, sorted by the list of its tuples' places.
private final class MemoryRun: RunCursor {
    private let base: UnsafeRawPointer
    private let entries: [TupleRuns.Entry]
    private var index = 0

    init(base: UnsafeRawPointer, entries: [TupleRuns.Entry]) {
        self.base = base
        self.entries = entries
    }

    override func advance() throws -> Bool {
        guard index < entries.count else { return false }
        let entry = entries[index]
        index += 1
        head = base + Int(entry.start)
        length = Int(entry.length)
        prefix = entry.prefix
        return true
    }
}
