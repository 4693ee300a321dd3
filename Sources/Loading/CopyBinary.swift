import Ingest

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes records as tuples of PostgreSQL's binary COPY format, built once when a record
/// arrives, each column in the format of the table column's own type (`LoadPlan.formats`;
/// the encoders are in CopyBinary+Types.swift).
///
/// Binary, not text: the server parses no uuid, integer, numeric or timestamp text, which made
/// its side of COPY ~1.36× faster on the e-commerce table. Only values in the canonical form
/// `validate` writes (docs/protocol.md) are converted here; for anything else `writeRow`
/// returns nil and the batch goes through the text path (`CopyText`), where the server judges
/// each row and a refused row is reported with the server's own message.
enum CopyBinary {
    /// `PGCOPY\n\377\r\n\0`, flags 0, no header extension.
    static let header: [UInt8] = Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00] + [0, 0, 0, 0] + [0, 0, 0, 0]
    /// A field count of -1 ends the data.
    static let trailer: [UInt8] = [0xFF, 0xFF]

    /// Stores the tuple for the record in `line` at `base`, which has room for
    /// `line.bytes.count + plan.tupleSlack` bytes; `slots` holds each column's member index
    /// (`LoadPlan.locate`). Nil when a value is not in canonical form for its column.
    ///
    /// Into raw memory, not an `[UInt8]`: per-byte `Array.append` (a capacity and uniqueness
    /// check each) was ~10 % of load's instructions per row.
    @inline(__always)
    static func writeRow(
        from line: ProtocolLine, plan: LoadPlan, slots: UnsafeMutablePointer<Int32>, to base: UnsafeMutableRawPointer
    ) -> Int? {
        var out = TupleWriter(base: base)
        out.integer(Int16(truncatingIfNeeded: plan.columnCount))
        for column in 0..<plan.columnCount {
            let slot = Int(slots[column])
            guard slot >= 0 else {
                out.integer(Int32(-1))
                continue
            }
            let m = line.members[slot]
            if m.kind == .null {
                out.integer(Int32(-1))
                continue
            }
            guard appendValue(m, of: line, as: plan.formats[column], &out) else { return nil }
        }
        return out.count
    }

    /// Appends the tuple for the record in `line`; false, with `out` unchanged, when a value is
    /// not in canonical form (for tests and one-off rows; the hot path is `TupleEncoder`).
    static func appendRow(from line: ProtocolLine, plan: LoadPlan, into out: inout [UInt8]) -> Bool {
        let room = line.bytes.count + plan.tupleSlack
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: room, alignment: 8)
        let slots = UnsafeMutablePointer<Int32>.allocate(capacity: max(plan.columnCount, 1))
        defer {
            scratch.deallocate()
            slots.deallocate()
        }
        plan.locate(line, into: slots)
        guard let count = writeRow(from: line, plan: plan, slots: slots, to: scratch) else { return false }
        out.append(contentsOf: UnsafeRawBufferPointer(start: scratch, count: count))
        return true
    }

    /// Big-endian values stored one after another at a pointer with room for them.
    struct TupleWriter {
        let base: UnsafeMutableRawPointer
        private(set) var count = 0

        init(base: UnsafeMutableRawPointer) { self.base = base }

        /// A big-endian integer of its own width (int16, int32, int64 in the format).
        @inline(__always)
        mutating func integer<T: FixedWidthInteger>(_ v: T) {
            base.storeBytes(of: v.bigEndian, toByteOffset: count, as: T.self)
            count += MemoryLayout<T>.size
        }

        @inline(__always)
        mutating func bytes(_ b: UnsafeRawBufferPointer) {
            if let from = b.baseAddress { (base + count).copyMemory(from: from, byteCount: b.count) }
            count += b.count
        }
    }
}
