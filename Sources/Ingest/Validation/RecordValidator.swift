/// Applies a contract (docs/contracts.md) to one record line and writes the normalised record,
/// or collects every reason it fails.
///
/// Works on the scanned line's bytes: no `String` per row unless the row is rejected, no
/// Foundation date parsing, and the output is written straight into the caller's buffer.
public struct RecordValidator {
    public let rules: ValidationRules
    public var contract: Contract { rules.contract }
    private var tracker: DuplicateTracker
    private let parsers: [ColumnValueParser]
    private let keys: ColumnKeys
    private let checks: [CompiledCheck]
    private var scratch = RecordScratch(capacity: 4096)
    /// Per row: each column's member index, output range and outcome.
    private var slots: [Int32]
    private var memberColumns: [Int16] = []
    private var valueStart: [Int]
    private var valueEnd: [Int]
    private var outcome: [FieldOutcome]
    private let overhead: Int
    /// `duplicate event_id (earlier in this file)`, and for records without a file
    /// `duplicate event_id (earlier in the stream)`: load says `(already in the table)`.
    private let duplicateInFile: String
    private let duplicateInStream: String
    private let keyIsUUID: Bool

    public init(rules: ValidationRules = ValidationRules()) {
        self.rules = rules
        let contract = rules.contract
        tracker = DuplicateTracker(maxIDsPerFile: rules.maxIDsPerFile, recentIDWindow: rules.recentIDWindow)
        let parsers = contract.columns.map(ColumnValueParser.init)
        self.parsers = parsers
        keys = ColumnKeys(contract.columns.map(\.name))
        checks = contract.checks.map { CompiledCheck($0, parsers) }
        slots = Array(repeating: -1, count: contract.columns.count)
        valueStart = Array(repeating: 0, count: contract.columns.count)
        valueEnd = Array(repeating: 0, count: contract.columns.count)
        outcome = Array(repeating: .null, count: contract.columns.count)
        overhead = 32 + parsers.reduce(0) { $0 + $1.memberPrefix.count + $1.maxGrowth + 4 }
        duplicateInFile = "duplicate \(contract.keyName) (earlier in this file)"
        duplicateInStream = "duplicate \(contract.keyName) (earlier in the stream)"
        keyIsUUID = contract.key.count == 1 && contract.columns[contract.key[0]].type == .uuid
    }

    /// Checks a record. When valid, appends the normalised record to `out` and returns no
    /// reasons; otherwise appends nothing and returns every reason (one per failing field, in
    /// column order, then the row's).
    public mutating func validate(_ line: ProtocolLine, now: UTCTimestamp, into out: inout [UInt8]) -> [RejectReason] {
        keys.fill(&slots, &memberColumns, from: line)
        let bound = line.bytes.count + overhead
        if bound > scratch.capacity { scratch = RecordScratch(capacity: bound * 2) }
        var w = RecordBytes(scratch.bytes)
        w.put("{\"kind\":\"record\"")
        // Every member in its order: a column's (last) member normalised, anything else copied
        // as it came; then the columns the line lacks (`null`, or a reason). Through unsafe
        // buffers: the arrays' uniqueness and bounds checks per access were measurable here.
        let kindIndex = line.slots[.kind]
        let nowMicros = now.millisecondsSinceEpoch * 1000
        var failed = false
        let base = scratch.bytes
        parsers.withUnsafeBufferPointer { parsers in
            slots.withUnsafeBufferPointer { slots in
                valueStart.withUnsafeMutableBufferPointer { valueStart in
                    valueEnd.withUnsafeMutableBufferPointer { valueEnd in
                        outcome.withUnsafeMutableBufferPointer { outcome in
                            memberColumns.withUnsafeBufferPointer { memberColumns in
                                let members = line.members
                                for index in 0..<members.count where index != kindIndex {
                                    let c = Int(memberColumns[index])
                                    if c >= 0 && Int(slots[c]) == index {
                                        if !RecordValidator.writeColumn(
                                            parsers[c], line, members[index], nowMicros, &w, base, &valueStart[c], &valueEnd[c],
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
                                    if !RecordValidator.writeColumn(
                                        parsers[c], line, nil, nowMicros, &w, base, &valueStart[c], &valueEnd[c], &outcome[c])
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
        var reasons: [RejectReason] = []
        var checkReasons: [(column: Int, reason: RejectReason)] = []
        for check in checks {
            if let reason = check.violation(outcome, valueStart, valueEnd, scratch.bytes) {
                checkReasons.append(
                    (
                        check.requireColumn,
                        RejectReason(
                            field: parsers[check.requireColumn].column.name, reason: reason,
                            value: check.showsValue ? memberText(line, slots, check.requireColumn) : nil)
                    ))
            }
        }
        if failed || !checkReasons.isEmpty {
            for i in 0..<parsers.count {
                if let c = checkReasons.first(where: { $0.column == i }) {
                    // A value where the check wants none: the check's reason, not the parse's.
                    reasons.append(c.reason)
                } else if case .rejected(let text, let show) = outcome[i] {
                    reasons.append(
                        RejectReason(field: parsers[i].column.name, reason: text, value: show ? memberText(line, slots, i) : nil))
                }
            }
        }
        // Duplicates: only an accepted row claims its key, so a rejected first row does not
        // make a corrected second one a duplicate.
        if !contract.key.isEmpty, contract.key.allSatisfy({ if case .value = outcome[$0] { true } else { false } }) {
            let key = rowKey()
            let duplicate = RecordValidator.withFile(line) { file in
                reasons.isEmpty ? !tracker.insert(key, file: file) : tracker.contains(key, file: file)
            }
            if duplicate {
                let reason = line.member(.file) == nil ? duplicateInStream : duplicateInFile
                reasons.append(RejectReason(field: contract.keyName, reason: reason, value: keyText()))
            }
        }
        guard reasons.isEmpty else { return reasons }
        w.put("}\n")
        let count = scratch.bytes.distance(to: w.p)
        assert(count <= bound)
        out.append(contentsOf: UnsafeRawBufferPointer(start: scratch.bytes, count: count))
        return reasons
    }

    /// Writes one column's member and value at `w`; false (and nothing written) when rejected.
    @inline(__always)
    private static func writeColumn(
        _ parser: ColumnValueParser, _ line: ProtocolLine, _ member: JSONMember?, _ nowMicros: Int64,
        _ w: inout RecordBytes, _ base: UnsafeMutablePointer<UInt8>, _ start: inout Int, _ end: inout Int,
        _ outcome: inout FieldOutcome
    ) -> Bool {
        let mark = w.p
        parser.memberPrefix.withUnsafeBytes { w.put($0) }
        start = base.distance(to: w.p)
        let result = parser.parse(line, member, nowMicros: nowMicros, into: &w)
        end = base.distance(to: w.p)
        outcome = result
        if case .rejected = result {
            w.p = mark
            return false
        }
        return true
    }

    /// The key of the row just checked: a UUID's own 128 bits, else the first 128 bits of the
    /// SHA-256 of the normalised values.
    private func rowKey() -> RowKey {
        if keyIsUUID {
            let c = contract.key[0]
            // The normalised value is `"` + 36 lowercase characters + `"`.
            return RowKey(UnsafeRawBufferPointer(start: scratch.bytes + valueStart[c] + 1, count: 36)) ?? RowKey(high: 0, low: 0)
        }
        var hasher = SHA256Hasher()
        for c in contract.key {
            hasher.update(UnsafeRawBufferPointer(start: scratch.bytes + valueStart[c], count: valueEnd[c] - valueStart[c]))
            var separator: UInt8 = 0x1F
            withUnsafeBytes(of: &separator) { hasher.update($0) }
        }
        return hasher.finalizeRowKey()
    }

    /// The key's value for a reason: the normalised text (a string's without its quotes).
    private func keyText() -> String {
        contract.key.map { c -> String in
            var bytes = UnsafeRawBufferPointer(start: scratch.bytes + valueStart[c], count: valueEnd[c] - valueStart[c])
            if bytes.count >= 2 && bytes[0] == UInt8(ascii: "\"") { bytes = UnsafeRawBufferPointer(rebasing: bytes[1..<(bytes.count - 1)]) }
            return String(decoding: bytes, as: UTF8.self)
        }.joined(separator: ", ")
    }

    /// Forgets the keys of a file whose end-of-file marker passed.
    public mutating func endOfFile(_ line: ProtocolLine) {
        guard let m = line.member(.file), m.kind == .string else { return }
        line.withStringBytes(m) { tracker.endOfFile($0) }
    }

    /// Files whose keys are currently remembered (for tests and memory checks).
    public var openFileCount: Int { tracker.openFileCount }

    /// Static on purpose: an instance method here would copy `self` (and its id sets) while
    /// the closure mutates the tracker — a full set copy per row.
    private static func withFile<R>(_ line: ProtocolLine, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        guard let m = line.member(.file), m.kind == .string else { return body(nil) }
        return line.withStringBytes(m) { body($0) }
    }
}

/// A row check compiled against the columns' parsers: its predicates' values in the form the
/// columns write them, so a test is a byte comparison.
struct CompiledCheck {
    let whenColumn: Int
    let when: Test
    let requireColumn: Int
    let require: Test
    let reason: ReasonTemplate
    /// A check that wants no value quotes the value found.
    var showsValue: Bool { if case .isNull = require { true } else { false } }

    enum Test {
        case isNull, notNull
        case oneOf(WordList)
        case noneOf(WordList)
    }

    init(_ check: RowCheck, _ parsers: [ColumnValueParser]) {
        func compile(_ p: ColumnPredicate) -> Test {
            func forms(_ values: [String]) -> WordList {
                WordList(values.map { parsers[p.column].normalisedForm(of: $0) ?? [] })
            }
            switch p.test {
            case .isNull: return .isNull
            case .notNull: return .notNull
            case .oneOf(let v): return .oneOf(forms(v))
            case .noneOf(let v): return .noneOf(forms(v))
            }
        }
        whenColumn = check.when.column
        when = compile(check.when)
        requireColumn = check.require.column
        require = compile(check.require)
        reason = ReasonTemplate(check.reason)
    }

    /// The reason when the row breaks this check; nil when it holds or cannot be judged (the
    /// `when` column failed its own rules).
    func violation(_ outcome: [FieldOutcome], _ start: [Int], _ end: [Int], _ base: UnsafeMutablePointer<UInt8>) -> String? {
        func value(_ c: Int) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base + start[c], count: end[c] - start[c]) }
        func holds(_ test: Test, _ c: Int) -> Bool? {
            switch (test, outcome[c]) {
            case (_, .rejected): return nil
            case (.isNull, let o): return o == .null
            case (.notNull, let o): return o != .null
            case (.oneOf(let forms), .value): return forms.index(of: value(c), fold: false) != nil
            case (.noneOf(let forms), .value): return forms.index(of: value(c), fold: false) == nil
            case (.oneOf, _): return false
            case (.noneOf, _): return true
            }
        }
        guard holds(when, whenColumn) == true else { return nil }
        switch (require, outcome[requireColumn]) {
        case (.isNull, .rejected(let text, _)) where text != "required":
            break  // a value where none may be, even one that does not parse
        case (_, .rejected):
            return nil
        default:
            guard holds(require, requireColumn) == false else { return nil }
        }
        return reason.text(value: value(whenColumn))
    }
}

/// A check's reason with `{column}` or `{a column}` standing for the `when` column's value.
struct ReasonTemplate {
    let before: String
    let after: String
    let placeholder: Bool
    let article: Bool

    init(_ text: String) {
        if let open = text.firstIndex(of: "{"), let close = text[open...].firstIndex(of: "}") {
            before = String(text[..<open])
            after = String(text[text.index(after: close)...])
            placeholder = true
            article = text[text.index(after: open)..<close].hasPrefix("a ")
        } else {
            before = text
            after = ""
            placeholder = false
            article = false
        }
    }

    func text(value: UnsafeRawBufferPointer) -> String {
        guard placeholder else { return before }
        var bytes = value
        if bytes.count >= 2 && bytes[0] == UInt8(ascii: "\"") { bytes = UnsafeRawBufferPointer(rebasing: bytes[1..<(bytes.count - 1)]) }
        let shown = String(decoding: bytes, as: UTF8.self)
        guard article else { return before + shown + after }
        let an = shown.first.map { "aeiouAEIOU".contains($0) } == true ? "an" : "a"
        return before + an + " " + shown + after
    }
}

/// The text of column `c`'s member as received, for a reason.
func memberText(_ line: ProtocolLine, _ slots: [Int32], _ c: Int) -> String? {
    let slot = Int(slots[c])
    guard slot >= 0 else { return nil }
    return valueText(line, line.members[slot])
}

/// The buffer a normalised record is written into before one append to the output.
///
/// A class only to free the memory; its fields are constants, so reading them costs no
/// exclusivity check. Copies of a validator share it, which is safe: they run one at a time.
final class RecordScratch {
    let bytes: UnsafeMutablePointer<UInt8>
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

    @inline(__always) mutating func put(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        UnsafeMutableRawPointer(p).copyMemory(from: base, byteCount: bytes.count)
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
