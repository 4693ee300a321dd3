import YAML

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A contract that cannot be used: where (file, line, column of the YAML, the contract column)
/// and what. Every stage exits 64 with this one line at start-up.
public struct ContractError: Error, CustomStringConvertible, Sendable, Equatable {
    public var path: String
    public var line: Int?
    public var problem: String

    public init(path: String, line: Int? = nil, problem: String) {
        self.path = path
        self.line = line
        self.problem = problem
    }

    /// `contracts/orders.yaml:12: column price: unknown rule "maxx" (expected …)`
    public var description: String {
        "\(path)\(line.map { ":\($0)" } ?? ""): \(problem)"
    }
}

extension Contract {
    /// The environment variable every stage and bin/ script reads when `--contract` is not given.
    public static let environmentVariable = "INGEST_CONTRACT"

    /// Reads and checks a contract file.
    public static func load(path: String) throws(ContractError) -> Contract {
        let text: String
        do {
            text = try readWholeFile(path)
        } catch {
            throw ContractError(path: path, problem: "cannot read the contract: \(error)")
        }
        return try parse(text, path: path)
    }

    /// Reads a contract from YAML text; `path` names it in messages.
    public static func parse(_ text: String, path: String) throws(ContractError) -> Contract {
        let root: YAMLNode?
        do {
            root = try YAMLDocument.parse(text)
        } catch {
            throw ContractError(path: path, line: error.line, problem: "not YAML: \(error.problem)")
        }
        guard let root else { throw ContractError(path: path, problem: "the file is empty") }
        var reader = ContractReader(path: path)
        return try reader.contract(root)
    }
}

/// Turns the YAML tree into a `Contract`, naming the line of every problem.
struct ContractReader {
    let path: String

    func fail(_ node: YAMLNode?, _ problem: String) -> ContractError {
        ContractError(path: path, line: node?.line, problem: problem)
    }

    /// The pairs of a mapping, refusing keys outside `allowed`.
    func mapping(_ node: YAMLNode, _ what: String, allowed: [String]) throws(ContractError) -> [(String, YAMLNode)] {
        guard case .mapping(let pairs) = node.value else { throw fail(node, "\(what) must be a mapping") }
        var out: [(String, YAMLNode)] = []
        var seen = Set<String>()
        for (key, value) in pairs {
            guard let name = key.scalar else { throw fail(key, "\(what): a key must be a plain word") }
            guard allowed.contains(name) else {
                throw fail(key, "\(what): unknown key \"\(name)\" (expected one of: \(allowed.joined(separator: ", ")))")
            }
            guard seen.insert(name).inserted else { throw fail(key, "\(what): \"\(name)\" appears twice") }
            out.append((name, value))
        }
        return out
    }

    func string(_ node: YAMLNode, _ what: String) throws(ContractError) -> String {
        guard let s = node.scalar else { throw fail(node, "\(what) must be a single value") }
        return s
    }

    func strings(_ node: YAMLNode, _ what: String) throws(ContractError) -> [String] {
        switch node.value {
        case .scalar(let s, _): return [s]
        case .sequence(let items):
            var out: [String] = []
            for item in items { out.append(try string(item, what)) }
            return out
        case .mapping: throw fail(node, "\(what) must be a list of values")
        }
    }

    func integer(_ node: YAMLNode, _ what: String, atLeast minimum: Int = 0) throws(ContractError) -> Int {
        guard let s = node.scalar, let v = Int(s), v >= minimum else {
            throw fail(node, "\(what) must be a whole number ≥ \(minimum) (got \(quotedForMessage(node.scalar ?? "a list")))")
        }
        return v
    }

    func boolean(_ node: YAMLNode, _ what: String) throws(ContractError) -> Bool {
        switch node.scalar?.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw fail(node, "\(what) must be true or false")
        }
    }

    static let topKeys = [
        "version", "table", "dead_letter_table", "description", "null_values", "extra_columns", "primary_key", "columns",
        "checks",
    ]
    static let columnKeys = [
        "name", "source", "data_type", "description", "constraints", "null_values", "trim", "accepted_values", "range",
        "scale", "length", "pattern", "format", "time_zone", "max_future", "true_values", "false_values",
    ]

    mutating func contract(_ root: YAMLNode) throws(ContractError) -> Contract {
        let top = try mapping(root, "the contract", allowed: Self.topKeys)
        func value(_ key: String) -> YAMLNode? { top.first { $0.0 == key }?.1 }
        if let v = value("version"), v.scalar != "1" {
            throw fail(v, "version: only version 1 is known (got \(quotedForMessage(v.scalar ?? "a list")))")
        }
        guard let tableNode = value("table") else { throw fail(root, "the contract has no \"table\"") }
        let tableText = try string(tableNode, "table")
        guard let table = TableName(tableText) else { throw fail(tableNode, "table: \(quotedForMessage(tableText)) is not a table name") }
        var deadLetters: TableName?
        if let node = value("dead_letter_table") {
            let text = try string(node, "dead_letter_table")
            guard let name = TableName(text) else { throw fail(node, "dead_letter_table: \(quotedForMessage(text)) is not a table name") }
            deadLetters = name
        }
        let fileNulls = try value("null_values").map { n throws(ContractError) in try strings(n, "null_values") } ?? [""]
        var extra = Contract.ExtraColumns.ignore
        if let node = value("extra_columns") {
            guard let e = node.scalar.flatMap(Contract.ExtraColumns.init(rawValue:)) else {
                throw fail(node, "extra_columns must be ignore or reject")
            }
            extra = e
        }
        guard let columnsNode = value("columns"), case .sequence(let items) = columnsNode.value, !items.isEmpty else {
            throw fail(value("columns") ?? root, "the contract needs \"columns\": a list with at least one column")
        }
        var columns: [ContractColumn] = []
        var keyColumns: [Int] = []
        for item in items {
            let (column, isKey) = try self.column(item, fileNulls: fileNulls)
            if columns.contains(where: { $0.name == column.name }) {
                throw fail(item, "column \(column.name): declared twice")
            }
            if columns.contains(where: { $0.source.lowercased() == column.source.lowercased() }) {
                throw fail(item, "column \(column.name): source \(quotedForMessage(column.source)) is read by another column too")
            }
            if isKey { keyColumns.append(columns.count) }
            columns.append(column)
        }
        if let node = value("primary_key") {
            guard keyColumns.isEmpty else {
                throw fail(node, "primary_key: the key is declared on the columns already (constraints: [primary_key])")
            }
            for name in try strings(node, "primary_key") {
                guard let index = columns.firstIndex(where: { $0.name == name }) else {
                    throw fail(node, "primary_key: no column named \(quotedForMessage(name))")
                }
                keyColumns.append(index)
            }
        }
        for index in keyColumns where !columns[index].notNull {
            columns[index].notNull = true  // a primary key is NOT NULL in PostgreSQL too
        }
        var checks: [RowCheck] = []
        if let node = value("checks") {
            guard case .sequence(let list) = node.value else { throw fail(node, "checks must be a list") }
            for item in list { checks.append(try check(item, columns)) }
        }
        return Contract(
            table: table, deadLetterTable: deadLetters, columns: columns, key: keyColumns, checks: checks, extraColumns: extra,
            path: path)
    }

    func column(_ node: YAMLNode, fileNulls: [String]) throws(ContractError) -> (ContractColumn, Bool) {
        let pairs = try mapping(node, "a column", allowed: Self.columnKeys)
        func value(_ key: String) -> YAMLNode? { pairs.first { $0.0 == key }?.1 }
        guard let nameNode = value("name") else { throw fail(node, "a column has no \"name\"") }
        let name = try string(nameNode, "name")
        guard !name.isEmpty, !name.utf8.contains(0) else { throw fail(nameNode, "a column name must not be empty") }
        let at = "column \(name)"
        guard let typeNode = value("data_type") else { throw fail(node, "\(at): no \"data_type\"") }
        let typeText = try string(typeNode, "\(at): data_type")
        guard let type = ColumnType(sql: typeText) else {
            throw fail(typeNode, "\(at): unknown data_type \(quotedForMessage(typeText)) (expected one of: \(ColumnType.spellings))")
        }
        var column = ContractColumn(name: name, type: type, nullValues: fileNulls)
        if let s = value("source") { column.source = try string(s, "\(at): source") }
        var isKey = false
        if let c = value("constraints") {
            guard case .sequence(let items) = c.value else { throw fail(c, "\(at): constraints must be a list") }
            for item in items {
                // dbt writes `- type: not_null`; a bare word reads the same.
                let word = item["type"]?.scalar ?? item.scalar
                switch word {
                case "not_null": column.notNull = true
                case "primary_key":
                    column.notNull = true
                    isKey = true
                default:
                    throw fail(item, "\(at): unknown constraint \(quotedForMessage(word ?? "?")) (expected not_null or primary_key)")
                }
            }
        }
        if let n = value("null_values") { column.nullValues = try strings(n, "\(at): null_values") }
        if let t = value("trim") { column.trim = try boolean(t, "\(at): trim") }
        var rules = ColumnRules()
        try numberRules(value, type, at, into: &rules)
        try textRules(value, type, at, into: &rules)
        try timeRules(value, type, at, into: &rules)
        try booleanRules(value, type, at, into: &rules)
        column.rules = rules
        // Accepted values are words: ` View ` means `view`.
        if value("trim") == nil && rules.acceptedValues != nil { column.trim = true }
        if let problem = ColumnValueParser.problem(with: column) { throw fail(node, "\(at): \(problem)") }
        return (column, isKey)
    }

    /// A column's `scale` and `range` (numbers, dates and timestamps).
    func numberRules(_ value: (String) -> YAMLNode?, _ type: ColumnType, _ at: String, into rules: inout ColumnRules) throws(ContractError)
    {
        if let s = value("scale") {
            guard case .numeric = type else { throw fail(s, "\(at): scale applies to numeric columns, not \(type)") }
            rules.scale = try integer(s, "\(at): scale")
        }
        if case .numeric(_, let s?) = type { rules.scale = min(rules.scale ?? s, s) }
        if let r = value("range") {
            guard type.isNumeric || type.isTemporal else {
                throw fail(r, "\(at): range applies to numbers, dates and timestamps, not \(type)")
            }
            for (key, bound) in try mapping(r, "\(at): range", allowed: ["min", "max", "greater_than", "less_than"]) {
                let text = try string(bound, "\(at): range \(key)")
                switch key {
                case "min", "greater_than":
                    guard rules.lower == nil else { throw fail(bound, "\(at): range has two lower bounds") }
                    rules.lower = ColumnRules.Bound(text, exclusive: key == "greater_than")
                default:
                    guard rules.upper == nil else { throw fail(bound, "\(at): range has two upper bounds") }
                    rules.upper = ColumnRules.Bound(text, exclusive: key == "less_than")
                }
            }
        }
    }

    /// A column's `length`, `accepted_values` and `pattern`.
    func textRules(_ value: (String) -> YAMLNode?, _ type: ColumnType, _ at: String, into rules: inout ColumnRules) throws(ContractError) {
        if let l = value("length") {
            guard type.isTextual else { throw fail(l, "\(at): length applies to text columns, not \(type)") }
            for (key, bound) in try mapping(l, "\(at): length", allowed: ["min", "max"]) {
                if key == "min" {
                    rules.minLength = try integer(bound, "\(at): length min")
                } else {
                    rules.maxLength = try integer(bound, "\(at): length max", atLeast: 1)
                }
            }
        }
        if case .varchar(let n?) = type { rules.maxLength = min(rules.maxLength ?? n, n) }
        if let a = value("accepted_values") {
            guard type.isTextual || type.isInteger else {
                throw fail(a, "\(at): accepted_values applies to text and integer columns, not \(type)")
            }
            var list: YAMLNode = a
            if case .mapping = a.value {
                let pairs = try mapping(a, "\(at): accepted_values", allowed: ["values", "case_sensitive"])
                guard let v = pairs.first(where: { $0.0 == "values" })?.1 else { throw fail(a, "\(at): accepted_values has no \"values\"") }
                list = v
                if let cs = pairs.first(where: { $0.0 == "case_sensitive" })?.1 {
                    rules.caseSensitive = try boolean(cs, "\(at): case_sensitive")
                }
            }
            let values = try strings(list, "\(at): accepted_values")
            guard !values.isEmpty else { throw fail(list, "\(at): accepted_values is empty") }
            rules.acceptedValues = values
        }
        if let p = value("pattern") {
            guard type.isTextual else { throw fail(p, "\(at): pattern applies to text columns, not \(type)") }
            let pattern = try string(p, "\(at): pattern")
            if let problem = RegularExpression.problem(pattern) { throw fail(p, "\(at): pattern: \(problem)") }
            rules.pattern = pattern
        }
    }

    /// A column's `format`, `time_zone` and `max_future` (dates and timestamps).
    func timeRules(_ value: (String) -> YAMLNode?, _ type: ColumnType, _ at: String, into rules: inout ColumnRules) throws(ContractError) {
        if let f = value("format") {
            guard type.isTemporal else { throw fail(f, "\(at): format applies to dates and timestamps, not \(type)") }
            rules.formats = []
            for text in try strings(f, "\(at): format") {
                switch text {
                case "iso8601": rules.formats.append(.iso8601)
                case "epoch_seconds": rules.formats.append(.epochSeconds)
                case "epoch_milliseconds": rules.formats.append(.epochMilliseconds)
                default:
                    if let problem = TemporalPattern.problem(text, date: type == .date) {
                        throw fail(f, "\(at): format \(quotedForMessage(text)): \(problem)")
                    }
                    rules.formats.append(.pattern(text))
                }
            }
        }
        if let z = value("time_zone") {
            guard type == .timestamp || type == .timestamptz else { throw fail(z, "\(at): time_zone applies to timestamps, not \(type)") }
            let text = try string(z, "\(at): time_zone")
            guard let offset = parseUTCOffset(text) else {
                throw fail(
                    z, "\(at): time_zone \(quotedForMessage(text)): expected UTC or an offset such as +02:00 (zone names are not supported)"
                )
            }
            rules.utcOffsetSeconds = offset
        }
        if let m = value("max_future") {
            guard type == .timestamp || type == .timestamptz || type == .date else {
                throw fail(m, "\(at): max_future applies to dates and timestamps, not \(type)")
            }
            let text = try string(m, "\(at): max_future")
            guard let ms = parseDurationMilliseconds(text) else {
                throw fail(m, "\(at): max_future \(quotedForMessage(text)): expected a duration such as 5m, 30s, 1h")
            }
            rules.maxFutureMilliseconds = ms
        }
    }

    /// A boolean column's `true_values` and `false_values`.
    func booleanRules(_ value: (String) -> YAMLNode?, _ type: ColumnType, _ at: String, into rules: inout ColumnRules) throws(ContractError)
    {
        if let t = value("true_values") {
            guard type == .boolean else { throw fail(t, "\(at): true_values applies to boolean columns") }
            rules.trueValues = try strings(t, "\(at): true_values").map { $0.lowercased() }
        }
        if let f = value("false_values") {
            guard type == .boolean else { throw fail(f, "\(at): false_values applies to boolean columns") }
            rules.falseValues = try strings(f, "\(at): false_values").map { $0.lowercased() }
        }
    }

    func check(_ node: YAMLNode, _ columns: [ContractColumn]) throws(ContractError) -> RowCheck {
        let pairs = try mapping(node, "a check", allowed: ["name", "when", "require", "reason"])
        func value(_ key: String) -> YAMLNode? { pairs.first { $0.0 == key }?.1 }
        let name = try value("name").map { n throws(ContractError) in try string(n, "check name") }
        let at = name.map { "check \($0)" } ?? "a check"
        guard let whenNode = value("when"), let requireNode = value("require") else {
            throw fail(node, "\(at) needs \"when\" and \"require\"")
        }
        let when = try predicate(whenNode, "\(at): when", columns)
        let require = try predicate(requireNode, "\(at): require", columns)
        let reason = try value("reason").map { r throws(ContractError) in try string(r, "\(at): reason") }
        return RowCheck(name: name, when: when, require: require, reason: reason ?? defaultReason(when, require, columns))
    }

    func predicate(_ node: YAMLNode, _ what: String, _ columns: [ContractColumn]) throws(ContractError) -> ColumnPredicate {
        let pairs = try mapping(node, what, allowed: ["column", "equals", "in", "not_equals", "not_in", "is_null", "not_null"])
        guard let c = pairs.first(where: { $0.0 == "column" })?.1 else { throw fail(node, "\(what) names no \"column\"") }
        let name = try string(c, "\(what): column")
        guard let index = columns.firstIndex(where: { $0.name == name }) else {
            throw fail(c, "\(what): no column named \(quotedForMessage(name))")
        }
        let tests = pairs.filter { $0.0 != "column" }
        guard tests.count == 1, let (key, v) = tests.first else {
            throw fail(node, "\(what): give exactly one of equals, in, not_equals, not_in, is_null, not_null")
        }
        let test: ColumnPredicate.Test
        switch key {
        case "equals", "in": test = .oneOf(try strings(v, "\(what): \(key)"))
        case "not_equals", "not_in": test = .noneOf(try strings(v, "\(what): \(key)"))
        case "is_null": test = try boolean(v, "\(what): is_null") ? .isNull : .notNull
        default: test = try boolean(v, "\(what): not_null") ? .notNull : .isNull
        }
        if case .oneOf(let values) = test, let accepted = columns[index].rules.acceptedValues {
            for value in values where !accepted.contains(value) {
                throw fail(v, "\(what): \(quotedForMessage(value)) is not among column \(name)'s accepted_values")
            }
        }
        return ColumnPredicate(column: index, test: test)
    }

    func defaultReason(_ when: ColumnPredicate, _ require: ColumnPredicate, _ columns: [ContractColumn]) -> String {
        let condition: String
        let c = columns[when.column].name
        switch when.test {
        case .isNull: condition = "\(c) is empty"
        case .notNull: condition = "\(c) is set"
        case .oneOf(let v): condition = "\(c) is \(v.joined(separator: " or "))"
        case .noneOf(let v): condition = "\(c) is not \(v.joined(separator: " or "))"
        }
        switch require.test {
        case .notNull: return "required when \(condition)"
        case .isNull: return "must be empty when \(condition)"
        case .oneOf(let v): return "must be \(v.joined(separator: " or ")) when \(condition)"
        case .noneOf(let v): return "must not be \(v.joined(separator: " or ")) when \(condition)"
        }
    }
}

/// `UTC`, `Z`, `+02:00`, `-0530`, `+05`: seconds east of UTC; nil otherwise.
public func parseUTCOffset(_ text: String) -> Int? {
    if text == "UTC" || text == "Z" || text == "utc" { return 0 }
    let bytes = Array(text.utf8)
    guard bytes.count >= 3, bytes[0] == UInt8(ascii: "+") || bytes[0] == UInt8(ascii: "-") else { return nil }
    let digits = bytes.dropFirst().filter { $0 != UInt8(ascii: ":") }
    guard digits.count == 2 || digits.count == 4, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
        bytes.count == 3 || bytes.count == 5 || (bytes.count == 6 && bytes[3] == UInt8(ascii: ":"))
    else { return nil }
    let d = digits.map { Int($0 - 0x30) }
    let hours = d[0] * 10 + d[1]
    let minutes = d.count == 4 ? d[2] * 10 + d[3] : 0
    guard hours <= 23, minutes < 60 else { return nil }
    let seconds = hours * 3600 + minutes * 60
    return bytes[0] == UInt8(ascii: "-") ? -seconds : seconds
}

/// The whole file as text (contracts are small).
func readWholeFile(_ path: String) throws -> String {
    let limit = 4 << 20
    let bytes = try readFile(path, limit: limit + 1)
    guard bytes.count <= limit else { throw SystemError("read", errno: EFBIG, path: path) }
    return String(decoding: bytes, as: UTF8.self)
}
