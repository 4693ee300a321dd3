#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Remembers accepted event ids so a second row with the same id is rejected.
///
/// Per source file: ids of the file being read, forgotten at its end-of-file marker, at most
/// `maxIDsPerFile` each (16 bytes per id plus set overhead, ≈ 20 MB at the 500,000 default);
/// beyond that the database primary key still rejects duplicates. Records without a file
/// share a sliding window of the most recent `recentIDWindow` ids.
struct DuplicateTracker {
    final class IDSet {
        var ids = Set<EventID>()
    }

    let maxIDsPerFile: Int
    let recentIDWindow: Int
    /// Open files kept at once; a stream interleaving more than this forgets the oldest.
    let maxOpenFiles = 64

    private var files: [[UInt8]: IDSet] = [:]
    private var fileOrder: [[UInt8]] = []
    private var currentName: [UInt8] = []
    private var current: IDSet?

    private var recent = Set<EventID>()
    private var recentRing: [EventID] = []
    private var recentNext = 0

    init(maxIDsPerFile: Int, recentIDWindow: Int) {
        self.maxIDsPerFile = maxIDsPerFile
        self.recentIDWindow = recentIDWindow
    }

    /// True when `id` was already accepted for `file` (nil: no provenance).
    mutating func contains(_ id: EventID, file: UnsafeRawBufferPointer?) -> Bool {
        guard let file else { return recent.contains(id) }
        return set(for: file, create: false)?.ids.contains(id) ?? false
    }

    /// Records `id` as accepted; false when it was already there.
    mutating func insert(_ id: EventID, file: UnsafeRawBufferPointer?) -> Bool {
        guard let file else { return insertRecent(id) }
        let set = set(for: file, create: true)!
        if set.ids.count >= maxIDsPerFile { return !set.ids.contains(id) }
        return set.ids.insert(id).inserted
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

    private mutating func set(for file: UnsafeRawBufferPointer, create: Bool) -> IDSet? {
        // Rows of one file arrive together: compare with the last file before hashing a name.
        if let current, currentName.count == file.count,
            file.count == 0 || currentName.withUnsafeBytes({ memcmp($0.baseAddress!, file.baseAddress!, file.count) == 0 })
        {
            return current
        }
        let key = [UInt8](file)
        if let found = files[key] {
            current = found
            currentName = key
            return found
        }
        guard create else { return nil }
        if files.count >= maxOpenFiles, let oldest = fileOrder.first {
            fileOrder.removeFirst()
            files.removeValue(forKey: oldest)
        }
        let fresh = IDSet()
        files[key] = fresh
        fileOrder.append(key)
        current = fresh
        currentName = key
        return fresh
    }

    private mutating func insertRecent(_ id: EventID) -> Bool {
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
