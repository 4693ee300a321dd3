/// A PostgreSQL column type a contract can declare: what `validate` checks values against and
/// what `load` writes in binary COPY.
public enum ColumnType: Equatable, Hashable, Sendable, CustomStringConvertible {
    case smallint, integer, bigint
    /// `numeric(precision, scale)`; both nil for an unconstrained `numeric`.
    case numeric(precision: Int?, scale: Int?)
    case real, doublePrecision
    case text
    /// `varchar(n)`; nil length for an unbounded `varchar`.
    case varchar(Int?)
    case boolean, date
    /// `timestamp` (without time zone).
    case timestamp
    case timestamptz
    case uuid
    case json, jsonb

    /// Every spelling `init(sql:)` accepts, for the message naming an unknown type.
    public static let spellings =
        "smallint, integer, bigint, numeric(p,s), real, double precision, text, varchar(n), boolean, date, timestamp, timestamptz, uuid, json, jsonb"

    /// Reads a type as a contract or PostgreSQL's `format_type` writes it: `int4`, `integer`,
    /// `numeric(10,2)`, `character varying(20)`, `timestamp with time zone`, any case.
    public init?(sql: String) {
        var text = sql.lowercased().split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
        var arguments: [Int]? = nil
        if let open = text.firstIndex(of: "("), text.hasSuffix(")") {
            let inner = text[text.index(after: open)..<text.index(before: text.endIndex)]
            let parts = inner.split(separator: ",", omittingEmptySubsequences: false).map {
                Int($0.trimming(" "))
            }
            guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else { return nil }
            arguments = parts.map { $0! }
            text = text[..<open].trimming(" ")
        }
        switch (text, arguments?.count ?? 0) {
        case ("smallint", 0), ("int2", 0): self = .smallint
        case ("integer", 0), ("int", 0), ("int4", 0): self = .integer
        case ("bigint", 0), ("int8", 0): self = .bigint
        case ("numeric", 0), ("decimal", 0): self = .numeric(precision: nil, scale: nil)
        case ("numeric", 1), ("decimal", 1):
            guard let p = arguments?[0], (1...1000).contains(p) else { return nil }
            self = .numeric(precision: p, scale: 0)
        case ("numeric", 2), ("decimal", 2):
            guard let p = arguments?[0], let s = arguments?[1], (1...1000).contains(p), (0...p).contains(s) else { return nil }
            self = .numeric(precision: p, scale: s)
        case ("real", 0), ("float4", 0): self = .real
        case ("double precision", 0), ("double", 0), ("float8", 0), ("float", 0): self = .doublePrecision
        case ("text", 0): self = .text
        case ("varchar", 0), ("character varying", 0): self = .varchar(nil)
        case ("varchar", 1), ("character varying", 1):
            guard let n = arguments?[0], n >= 1 else { return nil }
            self = .varchar(n)
        case ("boolean", 0), ("bool", 0): self = .boolean
        case ("date", 0): self = .date
        case ("timestamp", 0), ("timestamp without time zone", 0): self = .timestamp
        case ("timestamptz", 0), ("timestamp with time zone", 0): self = .timestamptz
        case ("uuid", 0): self = .uuid
        case ("json", 0): self = .json
        case ("jsonb", 0): self = .jsonb
        default: return nil
        }
    }

    /// The type as PostgreSQL's `format_type` spells it (what `load` compares with the table).
    public var description: String {
        switch self {
        case .smallint: "smallint"
        case .integer: "integer"
        case .bigint: "bigint"
        case .numeric(let p?, let s?): "numeric(\(p),\(s))"
        case .numeric: "numeric"
        case .real: "real"
        case .doublePrecision: "double precision"
        case .text: "text"
        case .varchar(let n?): "character varying(\(n))"
        case .varchar(nil): "character varying"
        case .boolean: "boolean"
        case .date: "date"
        case .timestamp: "timestamp without time zone"
        case .timestamptz: "timestamp with time zone"
        case .uuid: "uuid"
        case .json: "json"
        case .jsonb: "jsonb"
        }
    }

    public var isInteger: Bool { self == .smallint || self == .integer || self == .bigint }
    public var isTextual: Bool {
        if case .varchar = self { return true }
        return self == .text
    }
    public var isTemporal: Bool { self == .date || self == .timestamp || self == .timestamptz }
    public var isNumeric: Bool {
        if case .numeric = self { return true }
        return isInteger || self == .real || self == .doublePrecision
    }

    /// The inclusive range of an integer type.
    public var integerRange: ClosedRange<Int64>? {
        switch self {
        case .smallint: Int64(Int16.min)...Int64(Int16.max)
        case .integer: Int64(Int32.min)...Int64(Int32.max)
        case .bigint: Int64.min...Int64.max
        default: nil
        }
    }

    /// True when a column of type `self` holds every value a contract column of type
    /// `declared` accepts, written in `declared`'s canonical form: the start-up check of `load`.
    public func holds(_ declared: ColumnType) -> Bool {
        if self == declared { return true }
        switch (declared, self) {
        case (.smallint, .integer), (.smallint, .bigint), (.integer, .bigint): return true
        case (.real, .doublePrecision): return true
        case (.varchar, .text), (.varchar(_), .varchar(nil)): return true
        case (.varchar(let a?), .varchar(let b?)): return a <= b
        case (.json, .jsonb), (.jsonb, .json): return true
        case (.numeric(let dp, let ds), .numeric(let tp, let ts)):
            // An unconstrained numeric holds anything; a constrained one holds a narrower one.
            guard let tp, let ts else { return true }
            guard let dp, let ds else { return false }
            return ds <= ts && dp - ds <= tp - ts
        case (let d, .numeric(let tp, let ts)) where d.isInteger:
            guard let tp, let ts else { return true }
            let digits = d == .smallint ? 5 : d == .integer ? 10 : 19
            return tp - ts >= digits
        default: return false
        }
    }
}
