/// What a target table accepts: its columns (CSV header or message key → column, type, NULL
/// tokens, rules), the key duplicates are judged by, and the checks across columns.
///
/// Read from a YAML file (docs/contracts.md; `contracts/ecommerce_events.yaml` is the default).
/// Every stage loads the same file: `watch` maps headers through it, `validate` applies its
/// rules, `load` writes binary COPY for its types and checks it against the table's catalog.
public struct Contract: Sendable, Equatable {
    /// The target table, as `schema.name` or `name` (unquoted identifiers, as written).
    public var table: TableName
    /// Where rows that fail go, beside the NDJSON files.
    public var deadLetterTable: TableName
    public var columns: [ContractColumn]
    /// Indexes into `columns` of the key duplicates are judged by (the table's primary key);
    /// empty: no duplicate detection.
    public var key: [Int]
    public var checks: [RowCheck]
    /// What a CSV column or message key that no contract column names does.
    public var extraColumns: ExtraColumns
    /// The file it was read from, for messages; nil for one built in code.
    public var path: String?

    public enum ExtraColumns: String, Sendable {
        /// Not carried; `watch` logs them once per file.
        case ignore
        /// The file is refused as a whole.
        case reject
    }

    public init(
        table: TableName, deadLetterTable: TableName? = nil, columns: [ContractColumn], key: [Int] = [],
        checks: [RowCheck] = [], extraColumns: ExtraColumns = .ignore, path: String? = nil
    ) {
        self.table = table
        self.deadLetterTable = deadLetterTable ?? TableName(schema: table.schema, name: table.name + "_bad_records")
        self.columns = columns
        self.key = key
        self.checks = checks
        self.extraColumns = extraColumns
        self.path = path
    }

    /// The index of the column named `name` (its table column name), if any.
    public func column(named name: String) -> Int? { columns.firstIndex { $0.name == name } }

    /// The index of the column a CSV header cell or message key names: its `source`, compared
    /// without surrounding spaces and without case.
    public func column(source: String) -> Int? {
        let wanted = source.trimmingBlanks().lowercased()
        return columns.firstIndex { $0.source.lowercased() == wanted }
    }

    /// The key's name in reasons: `event_id`, or `key (a, b)` for several columns.
    public var keyName: String {
        key.count == 1 ? columns[key[0]].name : "key (" + key.map { columns[$0].name }.joined(separator: ", ") + ")"
    }
}

/// A table name, optionally schema-qualified; each part is quoted when SQL is built from it.
public struct TableName: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var schema: String?
    public var name: String

    public init(schema: String?, name: String) {
        self.schema = schema
        self.name = name
    }

    /// `name` or `schema.name` (no quoting: names with a dot are not supported here).
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard (1...2).contains(parts.count), parts.allSatisfy({ !$0.isEmpty }) else { return nil }
        self.init(schema: parts.count == 2 ? parts[0] : nil, name: parts[parts.count - 1])
    }

    public var description: String { schema.map { "\($0).\(name)" } ?? name }
}

/// One column of a contract.
public struct ContractColumn: Sendable, Equatable {
    /// The table column, which is also the line-protocol key after `watch`.
    public var name: String
    /// The CSV header name or message key it is read from (default: `name`).
    public var source: String
    public var type: ColumnType
    /// `constraints: [not_null]`: an empty value (or a NULL token) is rejected as `required`.
    public var notNull: Bool
    /// Cell texts that mean NULL, compared after trimming for every type but text.
    public var nullValues: [String]
    /// Trim spaces and tabs before checking (always for non-text types; text only when asked).
    public var trim: Bool
    public var rules: ColumnRules

    public init(
        name: String, source: String? = nil, type: ColumnType, notNull: Bool = false, nullValues: [String] = [""],
        trim: Bool? = nil, rules: ColumnRules = ColumnRules()
    ) {
        self.name = name
        self.source = source ?? name
        self.type = type
        self.notNull = notNull
        self.nullValues = nullValues
        self.trim = trim ?? !type.isTextual
        self.rules = rules
    }
}

/// The per-column rules beyond the type.
public struct ColumnRules: Sendable, Equatable {
    /// A bound as written in the contract (parsed by the validator for the column's type).
    public struct Bound: Sendable, Equatable {
        public var text: String
        /// `greater_than` / `less_than` rather than `min` / `max`.
        public var exclusive: Bool
        public init(_ text: String, exclusive: Bool) {
            self.text = text
            self.exclusive = exclusive
        }
    }

    public var lower: Bound?
    public var upper: Bound?
    /// At most this many decimal places (numeric; the type's scale when it has one).
    public var scale: Int?
    /// Length in characters (Unicode scalars), for text.
    public var minLength: Int?
    public var maxLength: Int?
    /// `accepted_values`: the value must be one of these; written as listed (so with
    /// `caseSensitive` false, ` View` becomes `view`).
    public var acceptedValues: [String]?
    public var caseSensitive: Bool
    /// A POSIX extended regular expression the whole value must match (text).
    public var pattern: String?
    /// How date and timestamp values are written, tried in order (`iso8601` by default).
    public var formats: [TemporalFormat]
    /// The offset of values without one, in seconds east of UTC (`time_zone`).
    public var utcOffsetSeconds: Int
    /// `max_future`: how far past the clock a timestamp may be, in milliseconds.
    public var maxFutureMilliseconds: Int64?
    /// Boolean spellings, lowercase.
    public var trueValues: [String]
    public var falseValues: [String]

    public static let defaultTrueValues = ["true", "t", "yes", "y", "on", "1"]
    public static let defaultFalseValues = ["false", "f", "no", "n", "off", "0"]

    public init(
        lower: Bound? = nil, upper: Bound? = nil, scale: Int? = nil, minLength: Int? = nil, maxLength: Int? = nil,
        acceptedValues: [String]? = nil, caseSensitive: Bool = true, pattern: String? = nil,
        formats: [TemporalFormat] = [.iso8601], utcOffsetSeconds: Int = 0, maxFutureMilliseconds: Int64? = nil,
        trueValues: [String] = ColumnRules.defaultTrueValues, falseValues: [String] = ColumnRules.defaultFalseValues
    ) {
        self.lower = lower
        self.upper = upper
        self.scale = scale
        self.minLength = minLength
        self.maxLength = maxLength
        self.acceptedValues = acceptedValues
        self.caseSensitive = caseSensitive
        self.pattern = pattern
        self.formats = formats
        self.utcOffsetSeconds = utcOffsetSeconds
        self.maxFutureMilliseconds = maxFutureMilliseconds
        self.trueValues = trueValues
        self.falseValues = falseValues
    }
}

/// How a date or timestamp is written in the source.
public enum TemporalFormat: Sendable, Equatable {
    /// RFC 3339 / ISO 8601: `2024-01-30T10:15:23.123Z`, a space for the `T`, any fraction,
    /// `Z` or `±hh:mm` or none (then the column's `time_zone`). For dates: `2024-01-30`.
    case iso8601
    /// Seconds or milliseconds since 1970-01-01 UTC, an integer (a fraction for seconds).
    case epochSeconds, epochMilliseconds
    /// A pattern of `%Y %m %d %H %M %S %f %z %%` and literal characters: `%d/%m/%Y %H:%M`.
    case pattern(String)
}

/// A check across columns: when the `when` column's value matches, the `require` column must
/// satisfy its predicate; otherwise the row is rejected with `reason` on the `require` column.
public struct RowCheck: Sendable, Equatable {
    public var name: String?
    public var when: ColumnPredicate
    public var require: ColumnPredicate
    /// The reason text; `{column}` is replaced by the `when` column's value, and `{a column}` by
    /// the value with its article (`a view`, `an add_to_cart`).
    public var reason: String

    public init(name: String? = nil, when: ColumnPredicate, require: ColumnPredicate, reason: String) {
        self.name = name
        self.when = when
        self.require = require
        self.reason = reason
    }
}

/// A test on one column's normalised value.
public struct ColumnPredicate: Sendable, Equatable {
    public enum Test: Sendable, Equatable {
        case isNull, notNull
        /// One of the values (compared as the column writes them: case-folded accepted values
        /// compare as listed).
        case oneOf([String])
        case noneOf([String])
    }

    public var column: Int
    public var test: Test

    public init(column: Int, test: Test) {
        self.column = column
        self.test = test
    }
}
