#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Finds which contract column a line's member names: an open-addressing table over the
/// column names' bytes, probed with the member's key as scanned (no `String`, no allocation).
public struct ColumnKeys: Sendable {
    private let names: [[UInt8]]
    /// Slot → column index + 1 (0: empty). Twice the columns, rounded up to a power of two.
    private let table: [Int32]
    private let mask: Int

    public init(_ columnNames: [String]) {
        names = columnNames.map { Array($0.utf8) }
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

    public var count: Int { names.count }

    @inline(__always)
    static func hash(_ key: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        return h ^ (h >> 29)
    }

    /// The column `key` (unescaped bytes) names, or nil.
    @inline(__always)
    public func column(_ key: UnsafeRawBufferPointer) -> Int? {
        var slot = Int(truncatingIfNeeded: ColumnKeys.hash(key)) & mask
        while true {
            let entry = Int(table[slot])
            if entry == 0 { return nil }
            let name = names[entry - 1]
            if name.count == key.count
                && (key.isEmpty || name.withUnsafeBytes { memcmp($0.baseAddress!, key.baseAddress!, key.count) == 0 })
            {
                return entry - 1
            }
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
    @inline(__always)
    public func fill(_ slots: inout [Int32], _ memberColumns: inout [Int16], from line: ProtocolLine) {
        for i in slots.indices { slots[i] = -1 }
        memberColumns.removeAll(keepingCapacity: true)
        for (index, m) in line.members.enumerated() {
            if let c = column(of: m, in: line) {
                slots[c] = Int32(index)
                memberColumns.append(Int16(c))
            } else {
                memberColumns.append(-1)
            }
        }
    }
}
