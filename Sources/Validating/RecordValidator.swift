import Ingest

/// Applies a contract (docs/contracts.md) to one record line and writes the normalised record,
/// or collects every reason it fails: the columns' own rules (through `RecordNormaliser`), the
/// row checks, and repeated keys.
///
/// No `String` per row unless the row is rejected, no Foundation date parsing, and the output
/// is written straight into the caller's buffer.
public struct RecordValidator {
    public let rules: ValidationRules
    public var contract: Contract { rules.contract }
    private var record: RecordNormaliser
    private var tracker: DuplicateTracker
    private let checks: [CompiledCheck]
    /// `duplicate event_id (earlier in this file)`, and for records without a file
    /// `duplicate event_id (earlier in the stream)`: load says `(already in the table)`.
    private let duplicateInFile: String
    private let duplicateInStream: String

    public init(rules: ValidationRules = ValidationRules()) {
        self.rules = rules
        let contract = rules.contract
        tracker = DuplicateTracker(maxIDsPerFile: rules.maxIDsPerFile, recentIDWindow: rules.recentIDWindow)
        record = RecordNormaliser(contract: contract)
        let parsers = record.parsers
        checks = contract.checks.map { CompiledCheck($0, parsers) }
        duplicateInFile = "duplicate \(contract.keyName) (earlier in this file)"
        duplicateInStream = "duplicate \(contract.keyName) (earlier in the stream)"
    }

    /// Checks a record. When valid, appends the normalised record to `out` and returns no
    /// reasons; otherwise appends nothing and returns every reason (one per failing field, in
    /// column order, then the row's).
    public mutating func validate(_ line: ProtocolLine, now: UTCTimestamp, into out: inout [UInt8]) -> [RejectReason] {
        let failed = !record.normalise(line, now: now)
        let parsers = record.parsers
        var reasons: [RejectReason] = []
        var checkReasons: [(column: Int, reason: RejectReason)] = []
        for check in checks {
            if let reason = check.violation(&record) {
                checkReasons.append(
                    (
                        check.requireColumn,
                        RejectReason(
                            field: parsers[check.requireColumn].column.name, reason: reason,
                            value: check.showsValue ? record.receivedText(line, column: check.requireColumn) : nil)
                    ))
            }
        }
        if failed || !checkReasons.isEmpty {
            for i in 0..<parsers.count {
                if let c = checkReasons.first(where: { $0.column == i }) {
                    // A value where the check wants none: the check's reason, not the parse's.
                    reasons.append(c.reason)
                } else if case .rejected(let text, let show) = record.outcomes[i] {
                    reasons.append(
                        RejectReason(field: parsers[i].column.name, reason: text, value: show ? record.receivedText(line, column: i) : nil))
                }
            }
        }
        // Duplicates: only an accepted row claims its key, so a rejected first row does not
        // make a corrected second one a duplicate.
        if !contract.key.isEmpty, contract.key.allSatisfy({ if case .value = record.outcomes[$0] { true } else { false } }) {
            let key = record.rowKey()
            let duplicate = RecordValidator.withFile(line, record.fileMember) { file in
                reasons.isEmpty ? !tracker.insert(key, file: file) : tracker.contains(key, file: file)
            }
            if duplicate {
                let reason = record.fileMember == nil ? duplicateInStream : duplicateInFile
                reasons.append(RejectReason(field: contract.keyName, reason: reason, value: keyText()))
            }
        }
        guard reasons.isEmpty else { return reasons }
        record.appendRecord(to: &out)
        return reasons
    }

    /// The key's value for a reason: the normalised text (a string's without its quotes).
    private func keyText() -> String {
        contract.key.map { c -> String in
            var bytes = record.value(c)
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
    private static func withFile<R>(_ line: ProtocolLine, _ file: JSONMember?, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        guard let m = file, m.kind == .string else { return body(nil) }
        // A name without escapes (the usual case) is its bytes between the quotes.
        if !m.valueEscaped { return body(UnsafeRawBufferPointer(rebasing: line.bytes[(m.valueStart + 1)..<(m.valueEnd - 1)])) }
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
    /// `inout` only so that the normaliser is passed in place, not copied (it is not changed).
    func violation(_ record: inout RecordNormaliser) -> String? {
        func holds(_ test: Test, _ c: Int) -> Bool? {
            switch (test, record.outcomes[c]) {
            case (_, .rejected): return nil
            case (.isNull, let o): return o == .null
            case (.notNull, let o): return o != .null
            case (.oneOf(let forms), .value): return forms.index(of: record.value(c), fold: false) != nil
            case (.noneOf(let forms), .value): return forms.index(of: record.value(c), fold: false) == nil
            case (.oneOf, _): return false
            case (.noneOf, _): return true
            }
        }
        guard holds(when, whenColumn) == true else { return nil }
        switch (require, record.outcomes[requireColumn]) {
        case (.isNull, .rejected(let text, _)) where text != "required":
            break  // a value where none may be, even one that does not parse
        case (_, .rejected):
            return nil
        default:
            guard holds(require, requireColumn) == false else { return nil }
        }
        return reason.text(value: record.value(whenColumn))
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
