import Ingest

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How one column's value is written in binary COPY: the format of the table column's exact
/// type (each type's `*recv` function in PostgreSQL reads exactly one).
enum WireFormat: Sendable, Equatable {
    case int2, int4, int8, numeric, float4, float8
    /// text, varchar, character: the bytes as they are.
    case text
    case bool, date, timestamp, timestamptz, uuid
    /// The JSON value's text; jsonb with its version byte first.
    case json, jsonb

    init(_ type: TableColumnType) {
        guard case .declared(let declared) = type else {
            self = .text
            return
        }
        switch declared {
        case .smallint: self = .int2
        case .integer: self = .int4
        case .bigint: self = .int8
        case .numeric: self = .numeric
        case .real: self = .float4
        case .doublePrecision: self = .float8
        case .text, .varchar: self = .text
        case .boolean: self = .bool
        case .date: self = .date
        case .timestamp: self = .timestamp
        case .timestamptz: self = .timestamptz
        case .uuid: self = .uuid
        case .json: self = .json
        case .jsonb: self = .jsonb
        }
    }

    /// The type a key value is cast to when probing the table: the column's type without its
    /// modifier (a numeric(10,2) key probed as numeric cannot fail on precision; the value is
    /// the same).
    var probeType: String {
        switch self {
        case .int2: "smallint"
        case .int4: "integer"
        case .int8: "bigint"
        case .numeric: "numeric"
        case .float4: "real"
        case .float8: "double precision"
        case .text: "text"
        case .bool: "boolean"
        case .date: "date"
        case .timestamp: "timestamp"
        case .timestamptz: "timestamptz"
        case .uuid: "uuid"
        case .json: "json"
        case .jsonb: "jsonb"
        }
    }
}

/// What `load` writes for a contract into its table, compiled once at start-up: the columns in
/// COPY order, each with its table's wire format, how a line's members find their column, and
/// the key duplicates are judged by.
///
/// The per-row loops (`CopyBinary.writeRow`, `CopyText.appendRow`) walk these arrays; nothing
/// per row looks a name up in a dictionary or makes a `String`. A class of constants, not a
/// struct: a struct of arrays read from the encoder's property was copied per row (its arrays
/// retained and released: ~8 % of load's instructions per row).
final class LoadPlan: @unchecked Sendable {
    // @unchecked: `nameBytes` is written once in init and only read after; freed in deinit.
    /// The target table as configured (contract or `--table`), quoted when SQL is made.
    let table: TableName
    /// `schema.name` as the catalog spells it: the checkpoints' `target_table`.
    let targetTable: String
    /// Column names, in COPY order (the contract's).
    let names: [String]
    let formats: [WireFormat]
    /// Indexes into the columns of the key; empty: no duplicate detection before COPY.
    let key: [Int]
    /// `event_id`, or `key (a, b)`: how reasons name the key.
    let keyName: String
    let columnKeys: ColumnKeys
    /// For a member whose key the scanner classified (`ProtocolKey.rawValue`), its column + 1;
    /// 0: none. The e-commerce columns are such keys: their rows never hash a key.
    let byProtocolKey: [Int16]
    /// How much longer than its line a row's tuple can be: per column at most 16 bytes (a
    /// length word, and an int8 or float8 of 8 bytes for a one-digit value), plus the header.
    let tupleSlack: Int
    /// The column names' bytes one after another (`nameStart[c]`, `nameLength[c]`), for
    /// checking a predicted column against a member's key without touching an array of arrays.
    private let nameBytes: UnsafeMutableRawPointer
    private let nameStart: [Int]
    private let nameLength: [Int]

    init(contract: Contract, table: TableName, targetTable: String, tableTypes: [TableColumnType]) {
        self.table = table
        self.targetTable = targetTable
        names = contract.columns.map(\.name)
        formats = tableTypes.map(WireFormat.init)
        key = contract.key
        keyName = contract.keyName
        columnKeys = ColumnKeys(names)
        var byKey = [Int16](repeating: 0, count: ProtocolKey.allCases.count)
        for key in ProtocolKey.allCases where key.rawValue >= ProtocolKey.eventID.rawValue {
            let name = String(describing: key.name)
            if let column = names.firstIndex(of: name) { byKey[key.rawValue] = Int16(column + 1) }
        }
        byProtocolKey = byKey
        tupleSlack = 16 * names.count + 128
        let utf8 = names.map { Array($0.utf8) }
        nameLength = utf8.map(\.count)
        var starts: [Int] = []
        var total = 0
        for bytes in utf8 {
            starts.append(total)
            total += bytes.count
        }
        nameStart = starts
        nameBytes = .allocate(byteCount: max(total, 1), alignment: 1)
        for (start, bytes) in zip(starts, utf8) {
            bytes.withUnsafeBytes { if let from = $0.baseAddress { (nameBytes + start).copyMemory(from: from, byteCount: $0.count) } }
        }
    }

    deinit { nameBytes.deallocate() }

    /// Whether `key` (a member's unescaped key bytes) is column `column`'s name.
    @inline(__always)
    func isName(of column: Int, _ key: UnsafeRawBufferPointer) -> Bool {
        let length = nameLength[column]
        return key.count == length && (length == 0 || memcmp(nameBytes + nameStart[column], key.baseAddress!, length) == 0)
    }

    /// The plan before the catalog is read: the table's types taken to be the contract's.
    /// `load` replaces it with the checked one before it reads a line.
    convenience init(contract: Contract, table: TableName? = nil) {
        let table = table ?? contract.table
        self.init(
            contract: contract, table: table, targetTable: table.schema == nil ? "public.\(table.name)" : table.description,
            tableTypes: contract.columns.map { .declared($0.type) })
    }

    var columnCount: Int { names.count }

    /// Fills `slots[c]` with the index of the member holding column `c` in `line` (the last if
    /// repeated), or -1.
    @inline(__always)
    func locate(_ line: ProtocolLine, into slots: UnsafeMutablePointer<Int32>) {
        for c in 0..<names.count { slots[c] = -1 }
        let first = Int(ProtocolKey.eventID.rawValue)
        for (index, m) in line.members.enumerated() {
            let classified = m.classifiedKey
            if classified >= 0 {
                guard classified >= first, classified < byProtocolKey.count else { continue }
                let column = Int(byProtocolKey[classified])
                if column > 0 { slots[column - 1] = Int32(index) }
            } else if let column = columnKeys.column(of: m, in: line) {
                slots[column] = Int32(index)
            }
        }
    }
}

/// The plan and the reading thread's scratch for making tuples as records arrive.
///
/// Owned by the reading thread: `PendingFile.add` (reading thread only) is its one user, and
/// `adopt` runs before the first line is read.
final class TupleEncoder {
    // `@exclusivity(unchecked)`: one thread (the reader's) uses an encoder, one call at a time;
    // the dynamic check per row was measurable.
    @exclusivity(unchecked) private(set) var plan: LoadPlan
    @exclusivity(unchecked) private var slots: UnsafeMutablePointer<Int32>
    @exclusivity(unchecked) private var capacity: Int
    /// For each member position, the column the previous record had there (-1: none): lines
    /// of one source come with their keys in one order, so one comparison of the key with
    /// that column's name usually finds the column without hashing the key.
    @exclusivity(unchecked) private var predicted: [Int32] = []

    /// Whether files keep their tuples in runs sorted by key (``TupleRuns``), for the COPY's
    /// merge; false: arrival order.
    let keyOrdered: Bool

    init(plan: LoadPlan, keyOrdered: Bool = true) {
        self.plan = plan
        self.keyOrdered = keyOrdered
        capacity = max(plan.columnCount, 1)
        slots = .allocate(capacity: capacity)
    }

    deinit { slots.deallocate() }

    /// Takes the plan checked against the catalog.
    func adopt(_ plan: LoadPlan) {
        if plan.columnCount > capacity {
            slots.deallocate()
            capacity = plan.columnCount
            slots = .allocate(capacity: capacity)
        }
        self.plan = plan
    }

    /// The field the tuples of a file are sorted by: the key's first column (nil: arrival order).
    var orderKeyField: Int? { keyOrdered ? plan.key.first : nil }

    /// An upper bound on the size of `line`'s tuple.
    @inline(__always)
    func maxTupleSize(_ line: ProtocolLine) -> Int { line.bytes.count + plan.tupleSlack }

    /// The tuple for `line` at `base` (room for `maxTupleSize(line)`), or nil when a value is
    /// not in canonical form (the text path then takes the batch).
    @inline(__always)
    func writeRow(from line: ProtocolLine, to base: UnsafeMutableRawPointer) -> Int? {
        let plan = self.plan
        locate(line, plan)
        return CopyBinary.writeRow(from: line, plan: plan, slots: slots, to: base)
    }

    /// `LoadPlan.locate`, trying the previous record's column at each position first.
    @inline(__always)
    private func locate(_ line: ProtocolLine, _ plan: LoadPlan) {
        for c in 0..<plan.columnCount { slots[c] = -1 }
        let first = Int(ProtocolKey.eventID.rawValue)
        if predicted.count < line.members.count { predicted += [Int32](repeating: -1, count: line.members.count - predicted.count) }
        for (index, m) in line.members.enumerated() {
            let classified = m.classifiedKey
            if classified >= 0 {
                guard classified >= first, classified < plan.byProtocolKey.count else { continue }
                let column = Int(plan.byProtocolKey[classified])
                if column > 0 { slots[column - 1] = Int32(index) }
                continue
            }
            let guess = Int(predicted[index])
            if guess >= 0 && !m.keyEscaped && plan.isName(of: guess, line.keySpan(m)) {
                slots[guess] = Int32(index)
            } else if let column = plan.columnKeys.column(of: m, in: line) {
                slots[column] = Int32(index)
                predicted[index] = Int32(column)
            } else {
                predicted[index] = -1
            }
        }
    }
}
