import Ingest
import Postgres

/// A starting contract, from a table's catalog, a sample CSV, or both, written as YAML for the
/// user to read and edit (`contract init`).
///
/// With both, the table decides the columns and their types (it is what `load` writes into) and
/// the sample gives each column its `source` header and NULL tokens; a sample column the table
/// lacks is reported and left out (watch ignores extra columns), a table column the sample lacks
/// stays (a file without it is refused, and the note says so).
public struct ContractDraft: Sendable {
    public struct Column: Sendable {
        public var name: String
        public var source: String?
        public var type: ColumnType
        public var notNull: Bool
        public var primaryKey: Bool
        public var format: String?
        /// Why the column is as it is, written as a comment above it.
        public var note: String?
    }

    public var table: TableName
    public var columns: [Column]
    /// The file's NULL tokens: every token the sample used (always `""`).
    public var nullValues: [String] = [""]
    /// Notes for the user, written to stderr: columns left out, types not supported.
    public var warnings: [String] = []
    /// Where the draft came from, for the header comment.
    public var origin: String

    /// A column name from a header cell: lowercase, runs of other characters as one `_`
    /// (`Order Date` → `order_date`), a leading digit prefixed (`2fa` → `c_2fa`).
    public static func columnName(_ header: String) -> String {
        var out = ""
        var pendingUnderscore = false
        for scalar in header.lowercased().unicodeScalars {
            let isWord = (scalar >= "a" && scalar <= "z") || (scalar >= "0" && scalar <= "9") || scalar == "_"
            if isWord {
                if pendingUnderscore && !out.isEmpty { out.append("_") }
                pendingUnderscore = false
                out.unicodeScalars.append(scalar)
            } else {
                pendingUnderscore = true
            }
        }
        if out.isEmpty { out = "column" }
        if let first = out.unicodeScalars.first, first >= "0" && first <= "9" { out = "c_" + out }
        return out
    }

    /// From a sample alone: every header column, its inferred type, NOT NULL where no value was
    /// missing, and the primary key when the first column is named like one (`id`, `…_id`) and
    /// its values are all present and distinct.
    public init(table: TableName, sample: SampleProfile, path: String) {
        self.table = table
        origin = "the sample \(path) (\(sample.rows) rows)"
        var names = Set<String>()
        columns = sample.columns.enumerated().map { index, s in
            var name = Self.columnName(s.header)
            while !names.insert(name).inserted { name += "_\(index + 1)" }
            let looksLikeKey =
                index == 0 && (name == "id" || name.hasSuffix("_id")) && s.unique
                && [.uuid, .integer, .bigint, .text].contains(s.type)
            var note: String?
            if s.values == 0 { note = "no values in the sample: text until you know better" }
            return Column(
                name: name, source: name == s.header.lowercased() ? nil : s.header, type: s.type,
                notNull: s.nullTokens.isEmpty && s.values > 0,
                primaryKey: looksLikeKey, format: s.format, note: note)
        }
        for s in sample.columns { for token in s.nullTokens where !nullValues.contains(token) { nullValues.append(token) } }
    }

    /// From the table's catalog, with the sample (when given) naming sources and NULL tokens.
    public init(table: TableName, catalog: [CatalogColumn], sample: SampleProfile?, samplePath: String?) {
        self.table = table
        origin = "the table \(table)" + (samplePath.map { " and the sample \($0)" } ?? "")
        columns = []
        var headers: [String: SampleProfile.Column] = [:]
        for s in sample?.columns ?? [] { headers[Self.columnName(s.header)] = s }
        for c in catalog {
            guard let type = ColumnType(sql: c.formattedType) else {
                warnings.append(
                    "column \(c.name): type \(c.formattedType) is not one a contract declares (\(ColumnType.spellings)): left out")
                continue
            }
            let header = headers.removeValue(forKey: Self.columnName(c.name))
            if c.hasDefault && header == nil && sample != nil {
                continue  // filled by the table (a serial, now()): not in the files
            }
            if c.hasDefault && sample == nil {
                warnings.append("column \(c.name): has a default (\(c.defaultText ?? "")): left out; add it if the files carry it")
                continue
            }
            var note: String?
            if sample != nil && header == nil { note = "not in the sample's header: a file without it is refused" }
            columns.append(
                Column(
                    name: c.name, source: header.flatMap { $0.header.lowercased() == c.name.lowercased() ? nil : $0.header }, type: type,
                    notNull: c.notNull,
                    primaryKey: c.primaryKey, format: header?.format, note: note))
            for token in header?.nullTokens ?? [] where !nullValues.contains(token) { nullValues.append(token) }
        }
        for (_, extra) in headers.sorted(by: { $0.key < $1.key }) {
            warnings.append(
                "sample column \(quotedForMessage(extra.header)): not a column of \(table): ignored by watch (extra_columns: ignore)")
        }
    }

    /// The contract as YAML (docs/contracts.md), in the words of contracts/ecommerce_events.yaml.
    public var yaml: String {
        var lines = [
            "# A starting contract for \(table), derived by `contract init` from \(origin).",
            "# Review it: types, NOT NULL and the key are inferred; add the rules (range, length,",
            "# accepted_values, pattern, checks) the data must meet. The format: docs/contracts.md.",
            "version: 1",
            "table: \(table)",
            "null_values: [\(nullValues.map(YAMLText.quoted).joined(separator: ", "))]",
            "columns:",
        ]
        for column in columns {
            if let note = column.note { lines.append("  # \(note)") }
            lines.append("  - name: \(YAMLText.plainOrQuoted(column.name))")
            if let source = column.source { lines.append("    source: \(YAMLText.quoted(source))") }
            lines.append("    data_type: \(YAMLText.plainOrQuoted(Self.spelling(column.type)))")
            if column.primaryKey {
                lines.append("    constraints: [primary_key]")
            } else if column.notNull {
                lines.append("    constraints: [not_null]")
            }
            if let format = column.format { lines.append("    format: \(YAMLText.quoted(format))") }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The short spelling a contract is written in (`varchar(20)`, `timestamptz`).
    static func spelling(_ type: ColumnType) -> String {
        switch type {
        case .varchar(let n?): "varchar(\(n))"
        case .varchar(nil): "varchar"
        case .timestamp: "timestamp"
        case .timestamptz: "timestamptz"
        default: type.description
        }
    }
}

/// YAML scalars as the contract writer needs them.
enum YAMLText {
    /// A double-quoted scalar: `\` and `"` escaped, control characters as `\xNN`.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\x" + (hex.count == 1 ? "0" : "") + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// Plain when it is a word (letters, digits, `_`, and the spaces, parentheses and commas
    /// of a type name), quoted otherwise.
    static func plainOrQuoted(_ text: String) -> String {
        let plain =
            !text.isEmpty && text.unicodeScalars.first.map { ($0 >= "a" && $0 <= "z") || $0 == "_" } == true
            && text.unicodeScalars.allSatisfy {
                ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || "_ (),".unicodeScalars.contains($0)
            }
            && !["true", "false", "yes", "no", "on", "off", "null", "y", "n"].contains(text)
        return plain ? text : quoted(text)
    }
}
