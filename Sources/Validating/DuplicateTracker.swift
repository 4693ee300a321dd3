import Ingest

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Remembers accepted event ids so a second row with the same id is rejected.
///
/// Per source file: ids of the file being read, forgotten at its end-of-file marker, at most
/// `maxIDsPerFile` each (the 250,000 default: ≈ 5 MB in an `RowKeyTable`, so `validate` stays
/// near 20 MB of RSS whatever the file size; beyond it the database primary key still rejects
/// duplicates and `load` reports them). Records without a file share a sliding window of the
/// most recent `recentIDWindow` ids.
struct DuplicateTracker {
    let maxIDsPerFile: Int
    let recentIDWindow: Int
    /// Open files kept at once; a stream interleaving more than this forgets the oldest.
    let maxOpenFiles = 64

    private var files: [[UInt8]: RowKeyTable] = [:]
    private var fileOrder: [[UInt8]] = []
    private var currentName: [UInt8] = []
    private var current: RowKeyTable?

    private var recent = Set<RowKey>()
    private var recentRing: [RowKey] = []
    private var recentNext = 0

    init(maxIDsPerFile: Int, recentIDWindow: Int) {
        self.maxIDsPerFile = maxIDsPerFile
        self.recentIDWindow = recentIDWindow
    }

    /// True when `id` was already accepted for `file` (nil: no provenance).
    mutating func contains(_ id: RowKey, file: UnsafeRawBufferPointer?) -> Bool {
        guard let file else { return recent.contains(id) }
        return table(for: file, create: false)?._withUnsafeGuaranteedRef { $0.contains(id) } ?? false
    }

    /// Records `id` as accepted; false when it was already there.
    mutating func insert(_ id: RowKey, file: UnsafeRawBufferPointer?) -> Bool {
        guard let file else { return insertRecent(id) }
        let maxIDsPerFile = maxIDsPerFile
        return table(for: file, create: true)!._withUnsafeGuaranteedRef { table in
            if table.count >= maxIDsPerFile { return !table.contains(id) }
            return table.insert(id)
        }
    }

    /// Forgets a file's ids: its end-of-file marker passed.
    mutating func endOfFile(_ file: UnsafeRawBufferPointer) {
        let key = [UInt8](file)
        guard files.removeValue(forKey: key) != nil else { return }
        fileOrder.removeAll { $0 == key }
        if currentName == key {
            current = nil
            currentName = []
        }
    }

    var openFileCount: Int { files.count }

    /// The file's table, unretained: `files` and `current` hold it, and a retain and release
    /// of it per row were ~40 instructions (callgrind).
    private mutating func table(for file: UnsafeRawBufferPointer, create: Bool) -> Unmanaged<RowKeyTable>? {
        // Rows of one file arrive together: compare with the last file before hashing a name.
        if let current, currentName.count == file.count,
            file.count == 0 || currentName.withUnsafeBytes({ memcmp($0.baseAddress!, file.baseAddress!, file.count) == 0 })
        {
            return .passUnretained(current)
        }
        let key = [UInt8](file)
        if let found = files[key] {
            current = found
            currentName = key
            return .passUnretained(found)
        }
        guard create else { return nil }
        if files.count >= maxOpenFiles, let oldest = fileOrder.first {
            fileOrder.removeFirst()
            files.removeValue(forKey: oldest)
        }
        let fresh = RowKeyTable(expectedCount: maxIDsPerFile)
        files[key] = fresh
        fileOrder.append(key)
        current = fresh
        currentName = key
        return .passUnretained(fresh)
    }

    private mutating func insertRecent(_ id: RowKey) -> Bool {
        guard recentIDWindow > 0 else { return true }
        guard recent.insert(id).inserted else { return false }
        if recentRing.count < recentIDWindow {
            recentRing.append(id)
        } else {
            recent.remove(recentRing[recentNext])
            recentRing[recentNext] = id
            recentNext = (recentNext + 1) % recentIDWindow
        }
        return true
    }
}

/// A set of event ids, exact (16 bytes compared, never a false match), in 64 open-addressing
/// shards that grow one at a time.
///
/// Why not `Set<RowKey>`: a Swift set doubles, holding the old and the new storage at once,
/// so 500,000 ids took ≈ 25 MB at the peak (validate's RSS: 39.8 MB on a 300 MB file, 14.7 MB
/// for `--help`); it also hashes each id with SipHash (~700 instructions per insert here, ~270
/// now). A shard grows by half when 85 % full, so growth holds two copies of one 64th of the
/// set; its last growth is fitted to `expectedCount`, so a full table uses ≈ 20 bytes per id.
/// The hash is a multiply-xorshift with a per-process random seed: ids from a file are not
/// trusted to be random, and a fixed hash would let crafted ids pile into one probe chain.
final class RowKeyTable {
    private struct Shard {
        var slots: UnsafeMutablePointer<RowKey>?
        var capacity = 0
        var count = 0
    }

    private static let shardBits = 6
    private static let shardCount = 1 << shardBits
    /// The all-zero id marks an empty slot; the nil UUID itself is kept aside.
    private static let empty = RowKey(high: 0, low: 0)

    /// The shards and two counters live in raw memory owned by this object: the fields are
    /// constants, so no access to them pays a dynamic exclusivity check.
    private let shards: UnsafeMutablePointer<Shard>
    /// [0]: ids held; [1]: 1 when the nil UUID is held.
    private let counters: UnsafeMutablePointer<Int>
    private let seed: UInt64
    /// Slots a shard ends with when the table holds `expectedCount` ids (load ≈ 0.8).
    private let fittedCapacity: Int

    init(expectedCount: Int) {
        fittedCapacity = expectedCount / RowKeyTable.shardCount * 5 / 4 + 32
        shards = .allocate(capacity: RowKeyTable.shardCount)
        shards.initialize(repeating: Shard(), count: RowKeyTable.shardCount)
        counters = .allocate(capacity: 2)
        counters.initialize(repeating: 0, count: 2)
        var generator = SystemRandomNumberGenerator()
        seed = generator.next() | 1
    }

    deinit {
        for s in 0..<RowKeyTable.shardCount { shards[s].slots?.deallocate() }
        shards.deinitialize(count: RowKeyTable.shardCount)
        shards.deallocate()
        counters.deallocate()
    }

    var count: Int { counters[0] }

    @inline(__always)
    private func hash(_ id: RowKey) -> UInt64 {
        var h = (id.high ^ seed) &* 0x9E37_79B9_7F4A_7C15
        h ^= id.low
        h ^= h >> 32
        h &*= 0xD6E8_FEB8_6659_FD93
        h ^= h >> 29
        h &*= seed
        return h ^ (h >> 32)
    }

    /// The shard (top bits) and the start slot in a shard of `capacity` (the next bits, scaled
    /// by a multiply: capacities are not powers of two).
    @inline(__always)
    private func place(_ h: UInt64, _ capacity: Int) -> Int {
        Int(truncatingIfNeeded: (h << UInt64(RowKeyTable.shardBits)).multipliedFullWidth(by: UInt64(capacity)).high)
    }

    func contains(_ id: RowKey) -> Bool {
        if id == RowKeyTable.empty { return counters[1] != 0 }
        let h = hash(id)
        let shard = shards + Int(truncatingIfNeeded: h >> UInt64(64 - RowKeyTable.shardBits))
        guard let slots = shard.pointee.slots else { return false }
        let capacity = shard.pointee.capacity
        var i = place(h, capacity)
        while true {
            let held = slots[i]
            if held == id { return true }
            if held == RowKeyTable.empty { return false }
            i += 1
            if i == capacity { i = 0 }
        }
    }

    /// Adds `id`; false when it was already there.
    func insert(_ id: RowKey) -> Bool {
        if id == RowKeyTable.empty {
            if counters[1] != 0 { return false }
            counters[1] = 1
            counters[0] += 1
            return true
        }
        let h = hash(id)
        let shard = shards + Int(truncatingIfNeeded: h >> UInt64(64 - RowKeyTable.shardBits))
        if shard.pointee.count * 20 >= shard.pointee.capacity * 17 { grow(shard) }
        let slots = shard.pointee.slots!
        let capacity = shard.pointee.capacity
        var i = place(h, capacity)
        while true {
            let held = slots[i]
            if held == id { return false }
            if held == RowKeyTable.empty { break }
            i += 1
            if i == capacity { i = 0 }
        }
        slots[i] = id
        shard.pointee.count += 1
        counters[0] += 1
        return true
    }

    /// Rehashes one shard into 1.5× the slots (64 at first: 64 KB for a table), or into its fitted size when that
    /// is nearer: growing past it would leave a full table a third empty.
    private func grow(_ shard: UnsafeMutablePointer<Shard>) {
        let old = shard.pointee
        var capacity = max(64, old.capacity + old.capacity / 2)
        if old.capacity < fittedCapacity && capacity > fittedCapacity { capacity = fittedCapacity }
        let slots = UnsafeMutablePointer<RowKey>.allocate(capacity: capacity)
        slots.initialize(repeating: RowKeyTable.empty, count: capacity)
        if let oldSlots = old.slots {
            for k in 0..<old.capacity where oldSlots[k] != RowKeyTable.empty {
                let id = oldSlots[k]
                var i = place(hash(id), capacity)
                while slots[i] != RowKeyTable.empty {
                    i += 1
                    if i == capacity { i = 0 }
                }
                slots[i] = id
            }
            oldSlots.deallocate()
        }
        shard.pointee.slots = slots
        shard.pointee.capacity = capacity
    }
}
