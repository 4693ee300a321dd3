import Ingest
import Validating

/// The rule a generated invalid row breaks, and what `validate` says of it.
public struct BrokenRule: Sendable, Equatable {
    /// `price.range_min`, `event_type.accepted_values`, `check.purchase_has_price`,
    /// `duplicate_key`, `field_count`: the column and the rule, as the manifest names them.
    public var rule: String
    /// The field the reason names (nil: the row as a whole).
    public var field: String?
    /// The reason text `validate` gives (`must be > 0`), or the reader's for `field_count`.
    public var reason: String
}

/// One generated row of a contract: a cell per column, in the contract's order.
public struct ContractRow: Sendable {
    public var cells: [String]
    public var broken: BrokenRule?
    /// The key's cells (the primary key) when the row is valid and the contract has a key.
    public var key: [String]?
}

/// Why a contract cannot be generated for (a pattern outside what `PatternSampler` draws, a
/// range with no value, checks no row can satisfy): `gen` exits 64 with it.
public struct GenerationError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// Synthetic rows for any contract: valid ones of every declared type within the rules,
/// NULLs in nullable columns, and a share (`invalidRate`) that each break exactly one rule.
///
/// Each row is checked by the validator that `validate --contract` runs (the same compiled
/// contract, the same clock) before it is written: a valid row is one `validate` accepts, an
/// invalid one is one it rejects with exactly one reason, on the field the rule concerns; that
/// reason goes to the manifest. A draw that misses is drawn again, so the rules' corners (an
/// exclusive bound, a scale, a check) never need exact arithmetic here.
public struct ContractRowGenerator {
    public let contract: Contract
    public var random: SplitMix64
    public var invalidRate: Double
    /// Share of nullable cells written as one of the column's NULL tokens.
    public var nullRate = 0.1
    private var samplers: [ColumnSampler]
    private let breakers: [Breaker]
    private var keySequence: Int64
    /// Hashes of the valid rows' keys so far in this run, when some key column is drawn at
    /// random (see `validRow`).
    private var runKeys = Set<Int>()
    private var keysDrawnAtRandom = false
    /// The clock `max_future` is judged by (gen sets it per batch; the value ranges are fixed
    /// when the generator is made).
    public var now: UTCTimestamp

    enum Breaker {
        case column(Int, String)
        case check(Int)
        case duplicateKey
        case fieldCount

        var isDuplicateKey: Bool {
            if case .duplicateKey = self { return true }
            return false
        }

        func name(_ contract: Contract) -> String {
            switch self {
            case .column(let c, let rule): "\(contract.columns[c].name).\(rule)"
            case .check(let i): "check.\(contract.checks[i].name ?? String(i + 1))"
            case .duplicateKey: "duplicate_key"
            case .fieldCount: "field_count"
            }
        }
    }

    /// `now` is the clock rows are drawn around (timestamps near it, none past `max_future`).
    public init(contract: Contract, seed: UInt64, invalidRate: Double = 0.04, now: UTCTimestamp) throws(GenerationError) {
        self.contract = contract
        random = SplitMix64(seed: seed)
        self.invalidRate = invalidRate
        self.now = now
        var samplers: [ColumnSampler] = []
        for column in contract.columns {
            do {
                samplers.append(try ColumnSampler(column, now: now))
            } catch {
                throw GenerationError(description: "\(contract.path ?? contract.table.description): \(error.problem)")
            }
        }
        self.samplers = samplers
        notes = samplers.compactMap(\.note)
        var breakers: [Breaker] = []
        for (index, sampler) in samplers.enumerated() {
            breakers += sampler.breakableRules.map { Breaker.column(index, $0) }
        }
        breakers += contract.checks.indices.map { Breaker.check($0) }
        if !contract.key.isEmpty { breakers.append(.duplicateKey) }
        breakers.append(.fieldCount)
        self.breakers = breakers
        keySequence = Int64(random.int(in: 0...999)) * 1000
        // One trial row: a contract whose checks no row satisfies fails here, not mid-run.
        var probe = self
        var verifier = Verifier(contract: contract, now: now)
        if probe.validRow(&verifier) == nil {
            let why = notes.isEmpty ? " (its checks or rules leave none)" : ": " + notes.joined(separator: "; ")
            throw GenerationError(
                description: "\(contract.path ?? contract.table.description): gen found no row this contract accepts in 50 tries" + why)
        }
    }

    /// What `gen` says once before it starts: columns whose values honour a rule only by the
    /// validator's filtering (a pattern beyond `PatternSampler`).
    public let notes: [String]

    /// Every rule name an invalid row may break, as the manifest writes them.
    public var ruleNames: [String] { breakers.map { $0.name(contract) } }

    /// The rows of one batch file (duplicates are judged within it, as `validate` does).
    public mutating func batch(rows count: Int) -> [ContractRow] {
        var verifier = Verifier(contract: contract, now: now)
        var rows: [ContractRow] = []
        rows.reserveCapacity(count)
        var validKeys: [[String]] = []
        for _ in 0..<count {
            if random.unit() < invalidRate, let row = invalidRow(&verifier, validKeys: validKeys) {
                rows.append(row)
                continue
            }
            guard let row = validRow(&verifier) else { continue }
            if let key = row.key { validKeys.append(key) }
            rows.append(row)
        }
        return rows
    }

    /// A row `validate` accepts; nil after 50 misses.
    ///
    /// Its key is new to the whole run, not only to its file: a key drawn at random (a patterned
    /// text, say) that repeats one of an earlier file would be a duplicate against the table,
    /// a reject the manifest does not announce. Keys are remembered by hash (a false match only
    /// costs a redraw), and only when some key column is drawn at random.
    mutating func validRow(_ verifier: inout Verifier) -> ContractRow? {
        for _ in 0..<50 {
            var cells = drawCells()
            enforceChecks(&cells)
            let key = contract.key.isEmpty ? nil : contract.key.map { cells[$0].text }
            if let key, keysDrawnAtRandom, runKeys.contains(key.hashValue) { continue }
            if case .valid = verifier.check(cells.map(\.text), written: true) {
                if let key, keysDrawnAtRandom { runKeys.insert(key.hashValue) }
                return ContractRow(cells: cells.map(\.text), broken: nil, key: key)
            }
        }
        return nil
    }

    /// A row breaking one rule, drawn uniformly among the contract's; nil when ten tries gave
    /// none that `validate` rejects for exactly that rule alone.
    private mutating func invalidRow(_ verifier: inout Verifier, validKeys: [[String]]) -> ContractRow? {
        for _ in 0..<10 {
            let breaker = random.pick(breakers)
            var cells = drawCells()
            enforceChecks(&cells)
            guard case .valid = verifier.check(cells.map(\.text), written: false) else { continue }
            var texts = cells.map(\.text)
            var expectedField: String?
            switch breaker {
            case .column(let c, let rule):
                guard let bad = samplers[c].breaking(rule, valid: texts[c], &random, now: now) else { continue }
                texts[c] = bad
                expectedField = contract.columns[c].name
            case .check(let i):
                let check = contract.checks[i]
                guard satisfy(check.when, &cells), violate(check.require, &cells) else { continue }
                texts = cells.map(\.text)
                expectedField = contract.columns[check.require.column].name
            case .duplicateKey:
                guard let earlier = validKeys.isEmpty ? nil : random.pick(validKeys) else { continue }
                for (k, c) in contract.key.enumerated() { texts[c] = earlier[k] }
                expectedField = contract.keyName  // as validate names it: `event_id`, `key (a, b)`
            case .fieldCount:
                let expected = texts.count
                if random.int(in: 0...1) == 0 || texts.count == 1 { texts.append("extra") } else { texts.removeLast() }
                let broken = BrokenRule(
                    rule: breaker.name(contract), field: nil, reason: "expected \(expected) fields, found \(texts.count)")
                return ContractRow(cells: texts, broken: broken, key: nil)
            }
            guard case .rejected(let reasons) = verifier.check(texts, written: breaker.isDuplicateKey), reasons.count == 1,
                reasons[0].field == expectedField
            else { continue }
            return ContractRow(
                cells: texts, broken: BrokenRule(rule: breaker.name(contract), field: expectedField, reason: reasons[0].reason), key: nil)
        }
        return nil
    }

    struct Cell {
        var text: String
        var isNull: Bool
    }

    private mutating func drawCells() -> [Cell] {
        keySequence += 1
        keysDrawnAtRandom = false
        var cells: [Cell] = []
        cells.reserveCapacity(samplers.count)
        for (index, sampler) in samplers.enumerated() {
            let column = contract.columns[index]
            if contract.key.contains(index), let v = sampler.keyValue(sequence: keySequence, &random, now: now) {
                cells.append(Cell(text: v, isNull: false))
            } else if contract.key.contains(index) {
                keysDrawnAtRandom = true
                cells.append(Cell(text: sampler.value(&random, now: now), isNull: false))
            } else if !column.notNull, !column.nullValues.isEmpty, random.unit() < nullRate {
                cells.append(Cell(text: random.pick(column.nullValues), isNull: true))
            } else {
                cells.append(Cell(text: sampler.value(&random, now: now), isNull: false))
            }
        }
        return cells
    }

    /// Makes every check hold: where its `when` matches, its `require` is made true.
    private mutating func enforceChecks(_ cells: inout [Cell]) {
        for _ in 0..<2 {
            for check in contract.checks where holds(check.when, cells) && !holds(check.require, cells) {
                _ = satisfy(check.require, &cells)
            }
        }
    }

    private func holds(_ p: ColumnPredicate, _ cells: [Cell]) -> Bool {
        let cell = cells[p.column]
        let rules = contract.columns[p.column].rules
        func among(_ values: [String]) -> Bool {
            !cell.isNull && values.contains { rules.caseSensitive ? $0 == cell.text : $0.lowercased() == cell.text.lowercased() }
        }
        switch p.test {
        case .isNull: return cell.isNull
        case .notNull: return !cell.isNull
        case .oneOf(let values): return among(values)
        case .noneOf(let values): return !among(values)
        }
    }

    /// Changes the predicate's column so it holds; false when it cannot (NULL in a NOT NULL column).
    private mutating func satisfy(_ p: ColumnPredicate, _ cells: inout [Cell]) -> Bool {
        let column = contract.columns[p.column]
        switch p.test {
        case .isNull:
            guard !column.notNull, let token = column.nullValues.first else { return false }
            cells[p.column] = Cell(text: token, isNull: true)
        case .notNull:
            if cells[p.column].isNull { cells[p.column] = Cell(text: samplers[p.column].value(&random, now: now), isNull: false) }
        case .oneOf(let values):
            cells[p.column] = Cell(text: random.pick(values), isNull: false)
        case .noneOf:
            for _ in 0..<20 where !holds(p, cells) {
                cells[p.column] = Cell(text: samplers[p.column].value(&random, now: now), isNull: false)
            }
        }
        return holds(p, cells)
    }

    private mutating func violate(_ p: ColumnPredicate, _ cells: inout [Cell]) -> Bool {
        let opposite: ColumnPredicate.Test
        switch p.test {
        case .isNull: opposite = .notNull
        case .notNull: opposite = .isNull
        case .oneOf(let values): opposite = .noneOf(values)
        case .noneOf(let values): opposite = .oneOf(values)
        }
        return satisfy(ColumnPredicate(column: p.column, test: opposite), &cells)
    }
}

/// `validate` over one candidate row: the record line `watch` would write for it, through the
/// contract's own `StreamValidator`.
struct Verifier {
    enum Outcome {
        case valid
        case rejected([RejectReason])
    }

    /// Sees only the rows written as valid (and repeats of their keys), so a repeated key is
    /// judged as `validate` judges it.
    private var written: StreamValidator
    /// The contract without its key: probes of rows never written must not remember keys.
    private var probe: StreamValidator
    private var names: [String]
    private var decoder = LineDecoder()

    init(contract: Contract, now: UTCTimestamp) {
        written = StreamValidator(rules: ValidationRules(contract: contract), clock: { now })
        var keyless = contract
        keyless.key = []
        probe = StreamValidator(rules: ValidationRules(contract: keyless), clock: { now })
        names = contract.columns.map(\.name)
    }

    /// The row's outcome; `written`: the row is to be written (its key then counts for later
    /// duplicates when it is valid).
    mutating func check(_ cells: [String], written isWritten: Bool) -> Outcome {
        let line = ContractRecords.recordLine(names: names, cells: cells)
        var out: [UInt8] = []
        line.withUnsafeBytes { raw in
            let bytes = UnsafeRawBufferPointer(rebasing: raw.dropLast())
            if isWritten {
                _ = written.process(bytes, inputLine: 1, into: &out)
            } else {
                _ = probe.process(bytes, inputLine: 1, into: &out)
            }
        }
        let reasons: [RejectReason]? = out.withUnsafeBytes { raw in
            guard let scanned = try? decoder.decode(UnsafeRawBufferPointer(rebasing: raw.dropLast())) else { return [] }
            return scanned.kind == .reject ? scanned.reasons() : nil
        }
        if let reasons { return .rejected(reasons) }
        return .valid
    }
}

/// Contract rows as protocol records (what `watch` writes for a CSV row: the raw cell texts
/// under the column names).
public enum ContractRecords {
    static func recordLine(names: [String], cells: [String], file: String? = nil, line: Int? = nil) -> [UInt8] {
        var out: [UInt8] = []
        var w = LineEncoder.beginLine(kind: "record", into: &out)
        if let file {
            w.key("file", &out)
            w.string(file, &out)
        }
        if let line {
            w.key("line", &out)
            w.int(line, &out)
        }
        for (name, cell) in zip(names, cells) {
            w.key(name, &out)
            w.string(cell, &out)
        }
        w.endLine(&out)
        return out
    }
}
