/// Writes a record line in its contract's normal form (docs/contracts.md): each column's
/// member normalised by its `ColumnValueParser`, any other member copied as it came, the
/// columns the line lacks written `null`; and notes what each column's field came to.
///
/// The per-row core of `validate` (Sources/Validating/RecordValidator.swift judges the row from
/// `outcomes`, the values and the key). It stays in this module with the parsers it calls per
/// column: across a module boundary they would not inline, and one call per row is all that
/// crosses it (a previous cut along the columns cost validate 485 instructions per row).
///
/// Works on the scanned line's bytes: no `String` per row unless a field is rejected, and the
/// record is written into a scratch buffer sized once per line, then appended in one go.
public struct RecordNormaliser {
    public let contract: Contract
    /// The contract's columns compiled, in column order.
    public let parsers: [ColumnValueParser]
    /// Per column, what its field came to in the last `normalise`.
    public private(set) var outcomes: [FieldOutcome]
    /// The last record's `file` member (its provenance), if any: read here, where the line's
    /// key slots are at hand, so that validate asks no further cross-module question per row.
    public private(set) var fileMember: JSONMember?
    private let keys: ColumnKeys
    @usableFromInline var scratch = RecordScratch(capacity: 4096)
    /// Per row: each column's member index, and each member's column.
    private var slots: [Int32]
    private var memberColumns: [Int16] = []
    /// Per row: where each column's normalised value lies in `scratch`.
    @usableFromInline var valueStart: [Int]
    @usableFromInline var valueEnd: [Int]
    /// Bytes of the record written so far (everything but the closing `}` and newline).
    private var written = 0
    private let overhead: Int
    private let keyIsUUID: Bool
    /// For keys that are not one UUID (nil otherwise: its libcrypto start-up, ~6 M
    /// instructions, is not paid for nothing). Shared by copies of a normaliser, as `scratch` is.
    private let keyDigest: RowKeyDigest?

    public init(contract: Contract) {
        self.contract = contract
        let parsers = contract.columns.map(ColumnValueParser.init)
        self.parsers = parsers
        keys = ColumnKeys(contract.columns.map(\.name))
        slots = Array(repeating: -1, count: contract.columns.count)
        valueStart = Array(repeating: 0, count: contract.columns.count)
        valueEnd = Array(repeating: 0, count: contract.columns.count)
        outcomes = Array(repeating: .null, count: contract.columns.count)
        overhead = 32 + parsers.reduce(0) { $0 + $1.memberPrefix.count + $1.maxGrowth + 4 }
        keyIsUUID = contract.key.count == 1 && contract.columns[contract.key[0]].type == .uuid
        keyDigest = keyIsUUID || contract.key.isEmpty ? nil : RowKeyDigest()
    }

    /// Normalises `line` (a record) into the scratch buffer; false when a column was rejected
    /// (`outcomes` says which). `now` is the clock for `max_future`.
    public mutating func normalise(_ line: ProtocolLine, now: UTCTimestamp) -> Bool {
        keys.fill(&slots, &memberColumns, from: line)
        let bound = line.bytes.count + overhead
        if bound > scratch.capacity { scratch = RecordScratch(capacity: bound * 2) }
        var w = RecordBytes(scratch.bytes)
        w.put("{\"kind\":\"record\"")
        // Every member in its order: a column's (last) member normalised, anything else copied
        // as it came; then the columns the line lacks (`null`, or a reason). Through unsafe
        // buffers: the arrays' uniqueness and bounds checks per access were measurable here.
        let kindIndex = line.slots[.kind]
        fileMember = line.member(.file)
        let nowMicros = now.millisecondsSinceEpoch * 1000
        var failed = false
        let base = scratch.bytes
        parsers.withUnsafeBufferPointer { parsers in
            slots.withUnsafeBufferPointer { slots in
                valueStart.withUnsafeMutableBufferPointer { valueStart in
                    valueEnd.withUnsafeMutableBufferPointer { valueEnd in
                        outcomes.withUnsafeMutableBufferPointer { outcome in
                            memberColumns.withUnsafeBufferPointer { memberColumns in
                                let members = line.members
                                for index in 0..<members.count where index != kindIndex {
                                    let c = Int(memberColumns[index])
                                    if c >= 0 && Int(slots[c]) == index {
                                        if !RecordNormaliser.writeColumn(
                                            Unmanaged.passUnretained(parsers[c]), line, members[index], nowMicros, &w, base, &valueStart[c],
                                            &valueEnd[c],
                                            &outcome[c])
                                        {
                                            failed = true
                                        }
                                        continue
                                    }
                                    let m = members[index]
                                    w.put(UInt8(ascii: ","))
                                    w.put(UInt8(ascii: "\""))
                                    w.put(line.keySpan(m))
                                    w.put(UInt8(ascii: "\""))
                                    w.put(UInt8(ascii: ":"))
                                    w.put(line.span(m))
                                }
                                for c in 0..<parsers.count where slots[c] < 0 {
                                    if !RecordNormaliser.writeColumn(
                                        Unmanaged.passUnretained(parsers[c]), line, nil, nowMicros, &w, base, &valueStart[c], &valueEnd[c],
                                        &outcome[c])
                                    {
                                        failed = true
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        written = scratch.bytes.distance(to: w.p)
        assert(written + 2 <= bound)
        return !failed
    }

    /// Appends the record just normalised, with its closing `}` and newline, to `out`.
    /// `mutating` (it changes nothing) so that the caller's normaliser is passed in place: a
    /// non-mutating call across the module boundary copied the whole struct each row.
    public mutating func appendRecord(to out: inout [UInt8]) {
        var w = RecordBytes(scratch.bytes + written)
        w.put("}\n")
        out.append(contentsOf: UnsafeRawBufferPointer(start: scratch.bytes, count: written + 2))
    }

    /// Column `c`'s normalised value in the last `normalise` (for a value or a null: its JSON
    /// text). Valid until the next `normalise`. Inlinable: row checks ask per row, from validate.
    @inlinable
    public func value(_ c: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: scratch.bytes + valueStart[c], count: valueEnd[c] - valueStart[c])
    }

    /// The text of column `c`'s member in `line` as received, for a reason; nil when absent.
    public func receivedText(_ line: ProtocolLine, column c: Int) -> String? {
        let slot = Int(slots[c])
        guard slot >= 0 else { return nil }
        return valueText(line, line.members[slot])
    }

    /// Writes one column's member and value at `w`; false (and nothing written) when rejected.
    /// The parser comes unretained: `parsers` outlives the call, and a retain and release of
    /// it per column were ~45 instructions each (callgrind).
    @inline(__always)
    private static func writeColumn(
        _ parser: Unmanaged<ColumnValueParser>, _ line: ProtocolLine, _ member: JSONMember?, _ nowMicros: Int64,
        _ w: inout RecordBytes, _ base: UnsafeMutablePointer<UInt8>, _ start: inout Int, _ end: inout Int,
        _ outcome: inout FieldOutcome
    ) -> Bool {
        parser._withUnsafeGuaranteedRef { parser in
            let mark = w.p
            parser.memberPrefix.withUnsafeBytes { w.put($0) }
            start = base.distance(to: w.p)
            let result = parser.parse(line, member, nowMicros: nowMicros, into: &w)
            end = base.distance(to: w.p)
            // Tested before the move into `outcome`: testing after it cost a copy and a
            // destroy of the enum per column (outlined calls, callgrind).
            var accepted = true
            if case .rejected = result {
                w.p = mark
                accepted = false
            }
            outcome = result
            return accepted
        }
    }

    /// The key of the row just normalised (its key columns passed): a UUID's own 128 bits,
    /// else the first 128 bits of the SHA-256 of the normalised values.
    /// `mutating` for the same reason as `appendRecord`.
    public mutating func rowKey() -> RowKey {
        if keyIsUUID {
            let c = contract.key[0]
            // The normalised value is `"` + 36 lowercase characters + `"`.
            return RowKey(UnsafeRawBufferPointer(start: scratch.bytes + valueStart[c] + 1, count: 36)) ?? RowKey(high: 0, low: 0)
        }
        let keyDigest = keyDigest!
        keyDigest.begin()
        for c in contract.key {
            keyDigest.update(UnsafeRawBufferPointer(start: scratch.bytes + valueStart[c], count: valueEnd[c] - valueStart[c]))
            var separator: UInt8 = 0x1F
            withUnsafeBytes(of: &separator) { keyDigest.update($0) }
        }
        return keyDigest.finish()
    }
}

/// The buffer a normalised record is written into before one append to the output.
///
/// A class only to free the memory; its fields are constants, so reading them costs no
/// exclusivity check. Copies of a validator share it, which is safe: they run one at a time.
@usableFromInline
final class RecordScratch {
    @usableFromInline let bytes: UnsafeMutablePointer<UInt8>
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        bytes = .allocate(capacity: capacity)
    }

    deinit { bytes.deallocate() }
}

/// A write cursor over memory the caller sized: plain stores, no bounds or uniqueness checks.
struct RecordBytes {
    var p: UnsafeMutablePointer<UInt8>

    init(_ p: UnsafeMutablePointer<UInt8>) { self.p = p }

    @inline(__always) mutating func put(_ b: UInt8) {
        p.pointee = b
        p += 1
    }

    @inline(__always) mutating func put(_ s: StaticString) {
        p.update(from: s.utf8Start, count: s.utf8CodeUnitCount)
        p += s.utf8CodeUnitCount
    }

    /// Short copies (most keys and values here) as word stores (``copyBytes(to:from:count:)``).
    @inline(__always) mutating func put(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        copyBytes(to: UnsafeMutableRawPointer(p), from: base, count: bytes.count)
        p += bytes.count
    }

    @inline(__always) mutating func advance(_ count: Int) { p += count }

    /// `"text"` with JSON escapes (at most 6 bytes per input byte, plus 2).
    @inline(__always) mutating func putJSONString(_ text: UnsafeRawBufferPointer) {
        var r = ReservedBytes(p)
        r.string(text)
        p += r.count
    }

    /// A non-negative integer of any width in decimal.
    @inline(__always) mutating func putUnsigned(_ value: UInt64) {
        if value <= UInt64(Int.max) { return putDecimal(Int(value)) }
        putDecimal(Int(value / 10))
        put(UInt8(truncatingIfNeeded: 0x30 + value % 10))
    }

    /// A non-negative integer in decimal, two digits per division.
    @inline(__always) mutating func putDecimal(_ value: Int) {
        var digits = 1
        var bound = 10
        while value >= bound && digits < 19 {
            digits += 1
            bound &*= 10
        }
        let pairs: StaticString =
            "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"
        let table = pairs.utf8Start
        var v = value
        var q = p + digits
        p = q
        while v >= 10 {
            let pair = (v % 100) &* 2
            v /= 100
            q -= 2
            q[0] = table[pair]
            q[1] = table[pair + 1]
        }
        if q > p - digits {
            q -= 1
            q.pointee = UInt8(truncatingIfNeeded: 0x30 + v)
        }
    }
}

/// A value as received, for a reason: a string's text, or the JSON text of anything else.
func valueText(_ line: ProtocolLine, _ m: JSONMember) -> String {
    if m.kind == .string { return line.withStringBytes(m) { String(decoding: $0, as: UTF8.self) } }
    return String(decoding: line.span(m), as: UTF8.self)
}
