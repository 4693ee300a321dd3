#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Finds which contract column a line's member names: an open-addressing table over the
/// column names' bytes, probed with the member's key as scanned (no `String`, no allocation).
public struct ColumnKeys: Sendable {
    /// The names back to back, each at `nameStart[c]` for `nameLength[c]` bytes: one flat
    /// buffer, so a compare loads no inner array (its retain and release, with `bcmp`, were
    /// ~60 instructions per member of validate, callgrind).
    private let nameBytes: [UInt8]
    private let nameStart: [Int]
    private let nameLength: [Int]
    /// Slot → column index + 1 (0: empty). Twice the columns, rounded up to a power of two.
    private let table: [Int32]
    private let mask: Int

    public init(_ columnNames: [String]) {
        let names = columnNames.map { Array($0.utf8) }
        nameBytes = names.flatMap { $0 }
        var starts: [Int] = []
        var total = 0
        for name in names {
            starts.append(total)
            total += name.count
        }
        nameStart = starts
        nameLength = names.map(\.count)
        var size = 8
        while size < names.count * 2 { size <<= 1 }
        var table = [Int32](repeating: 0, count: size)
        for (index, name) in names.enumerated() {
            var slot = name.withUnsafeBytes { Int(truncatingIfNeeded: ColumnKeys.hash($0)) } & (size - 1)
            while table[slot] != 0 { slot = (slot + 1) & (size - 1) }
            table[slot] = Int32(index + 1)
        }
        self.table = table
        mask = size - 1
    }

    public var count: Int { nameLength.count }

    /// The length and the first and last eight bytes, mixed: every member of every line is
    /// looked up, and a byte-by-byte hash of each key was ~3 % of validate's instructions.
    @inline(__always)
    static func hash(_ key: UnsafeRawBufferPointer) -> UInt64 {
        let n = key.count
        var h = UInt64(truncatingIfNeeded: n) &* 0x9E37_79B9_7F4A_7C15
        if n >= 8 {
            h ^= key.loadUnaligned(as: UInt64.self)
            h = (h ^ (h >> 31)) &* 0xBF58_476D_1CE4_E5B9
            h ^= key.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)
        } else {
            for b in key { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        }
        h = (h ^ (h >> 29)) &* 0x94D0_49BB_1331_11EB
        return h ^ (h >> 32)
    }

    /// The column `key` (unescaped bytes) names, or nil.
    @inline(__always)
    public func column(_ key: UnsafeRawBufferPointer) -> Int? {
        var slot = Int(truncatingIfNeeded: ColumnKeys.hash(key)) & mask
        while true {
            let entry = Int(table[slot])
            if entry == 0 { return nil }
            if matches(entry - 1, key) { return entry - 1 }
            slot = (slot + 1) & mask
        }
    }

    /// The column a scanned member's key names, or nil (escaped keys are unescaped first).
    @inline(__always)
    public func column(of m: JSONMember, in line: ProtocolLine) -> Int? {
        if m.protocolKey >= 0 && Int(m.protocolKey) < ProtocolKey.eventID.rawValue { return nil }  // a protocol key is never a column
        if !m.keyEscaped { return column(line.keySpan(m)) }
        var plain: [UInt8] = []
        unescapeJSONString(line.keySpan(m), into: &plain)
        return plain.withUnsafeBytes { column($0) }
    }

    /// For each column, the index of the member holding it in `line` (the last if repeated) or
    /// -1; for each member, its column or -1.
    /// `memberColumns` holds the previous line's answers on entry: they are tried first, since
    /// a stream's lines mostly repeat one key order (one compare instead of a hash and a probe:
    /// the lookup was ~11 % of validate's instructions on a 20-column contract, callgrind).
    @inline(__always)
    public func fill(_ slots: inout [Int32], _ memberColumns: inout [Int16], from line: ProtocolLine) {
        let members = line.members
        if memberColumns.count < members.count {
            memberColumns += [Int16](repeating: -1, count: members.count * 2 - memberColumns.count)
        }
        slots.withUnsafeMutableBufferPointer { slots in
            for i in 0..<slots.count { slots[i] = -1 }
            memberColumns.withUnsafeMutableBufferPointer { columns in
                for index in 0..<members.count {
                    let m = members[index]
                    let guess = Int(columns[index])
                    var found: Int?
                    if guess >= 0 && !m.keyEscaped && matches(guess, line.keySpan(m)) {
                        found = guess
                    } else {
                        found = column(of: m, in: line)
                    }
                    if let c = found {
                        slots[c] = Int32(index)
                        columns[index] = Int16(c)
                    } else {
                        columns[index] = -1
                    }
                }
            }
        }
    }

    /// Whether column `c`'s name is exactly `key`: 4 to 16 bytes as two overlapping words
    /// (names are mostly short), longer ones by `memcmp`.
    @inline(__always)
    private func matches(_ c: Int, _ key: UnsafeRawBufferPointer) -> Bool {
        let n = key.count
        guard nameLength.withUnsafeBufferPointer({ $0[c] }) == n else { return false }
        if n == 0 { return true }
        return nameBytes.withUnsafeBytes { bytes in
            let name = bytes.baseAddress! + nameStart.withUnsafeBufferPointer { $0[c] }
            let k = key.baseAddress!
            if n >= 8 {
                if n > 16 { return memcmp(name, k, n) == 0 }
                return name.loadUnaligned(as: UInt64.self) == k.loadUnaligned(as: UInt64.self)
                    && name.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self) == k.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)
            }
            if n >= 4 {
                return name.loadUnaligned(as: UInt32.self) == k.loadUnaligned(as: UInt32.self)
                    && name.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self) == k.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self)
            }
            for i in 0..<n where name.load(fromByteOffset: i, as: UInt8.self) != k.load(fromByteOffset: i, as: UInt8.self) {
                return false
            }
            return true
        }
    }
}
