import Ingest
import Postgres

/// A target table's columns as PostgreSQL's catalog describes them: what `load` checks a
/// contract against at start-up, and what chooses each column's binary COPY format (binary COPY
/// needs the table's exact type, not the contract's: an `integer` value goes into a `bigint`
/// column as eight bytes).
struct TableCatalog {
    struct Column {
        var name: String
        /// `format_type` of the column: `numeric(10,2)`, `character varying(20)`, `text[]`.
        var typeText: String
        var notNull: Bool
        /// A default, an identity or a generated value: the table fills it when COPY leaves it out.
        var filledByTable: Bool
        /// A generated column, which COPY cannot write.
        var generated: Bool
    }

    /// `schema.name`, as the catalog spells it (what checkpoints are keyed by).
    var qualifiedName: String
    var columns: [Column]
    /// The primary key's columns, in the index's order; empty when the table has none.
    var primaryKey: [String]

    /// Reads the catalog for `table` (a quoted identifier, as `LoaderSQL` makes it). The name
    /// travels as a parameter (`$1::regclass`); a missing table fails with 42P01.
    static func read(_ conn: PostgresConnection, table quoted: String) throws -> TableCatalog {
        let name = try conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::regclass",
            [quoted])
        let rows = try conn.execute(
            """
            SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '', a.attgenerated <> '',
                   coalesce((SELECT k.n FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) WHERE k.attnum = a.attnum), 0)
            FROM pg_attribute a
            LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
            WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum
            """, [quoted])
        var columns: [Column] = []
        var key: [(position: Int, name: String)] = []
        for r in 0..<rows.rowCount {
            let column = Column(
                name: rows.value(row: r, column: 0) ?? "", typeText: rows.value(row: r, column: 1) ?? "",
                notNull: rows.value(row: r, column: 2) == "t", filledByTable: rows.value(row: r, column: 3) == "t",
                generated: rows.value(row: r, column: 4) == "t")
            columns.append(column)
            if let position = Int(rows.value(row: r, column: 5) ?? ""), position > 0 { key.append((position, column.name)) }
        }
        return TableCatalog(
            qualifiedName: name.value(row: 0, column: 0) ?? quoted, columns: columns,
            primaryKey: key.sorted { $0.position < $1.position }.map(\.name))
    }
}

/// A table column's type as far as `load` writes it: a contract type, or `character(n)`, which
/// takes text's bytes (the server pads them, as it does for text COPY).
enum TableColumnType: Equatable, CustomStringConvertible {
    case declared(ColumnType)
    case character(Int)

    init?(formatType text: String) {
        let lowered = text.lowercased()
        if lowered == "character" || lowered == "bpchar" {
            self = .character(1)
        } else if lowered.hasPrefix("character("), lowered.hasSuffix(")"),
            let n = Int(lowered.dropFirst("character(".count).dropLast())
        {
            self = .character(n)
        } else if let type = ColumnType(sql: text) {
            self = .declared(type)
        } else {
            return nil
        }
    }

    var description: String {
        switch self {
        case .declared(let type): type.description
        case .character(let n): "character(\(n))"
        }
    }

    /// Whether every value a contract column of type `declared` accepts fits (ColumnType.holds,
    /// and `character(n)` for a `varchar(m)` with m ≤ n).
    func holds(_ declared: ColumnType) -> Bool {
        switch self {
        case .declared(let type): return type.holds(declared)
        case .character(let n):
            if case .varchar(let m?) = declared { return m <= n }
            return false
        }
    }
}

/// Why a contract and its table do not fit: one line, naming the contract file, the column and
/// the problem (`load` exits 64 with it, before reading any input).
public struct ContractMismatch: Error, CustomStringConvertible {
    public let description: String
}

extension LoadPlan {
    /// The plan for `contract` on the table the catalog describes, or the first mismatch.
    ///
    /// Checked: every contract column exists, is not generated, and its table type is one load
    /// writes and can hold the declared type; every NOT NULL column without a default is in the
    /// contract; the contract's key is the table's primary key (duplicates against the table are
    /// found through it).
    static func checked(_ contract: Contract, table: TableName, catalog: TableCatalog) throws(ContractMismatch) -> LoadPlan {
        let file = contract.path ?? "the contract"
        func mismatch(_ text: String) -> ContractMismatch { ContractMismatch(description: "\(file): \(text)") }
        var tableTypes: [TableColumnType] = []
        for column in contract.columns {
            guard let found = catalog.columns.first(where: { $0.name == column.name }) else {
                throw mismatch("column \(column.name): not in the table \(catalog.qualifiedName)")
            }
            if found.generated {
                throw mismatch("column \(column.name): a generated column of \(catalog.qualifiedName), which COPY cannot write")
            }
            guard let type = TableColumnType(formatType: found.typeText) else {
                throw mismatch(
                    "column \(column.name): the table's type \(found.typeText) is not one load writes (\(ColumnType.spellings), character(n))"
                )
            }
            guard type.holds(column.type) else {
                throw mismatch("column \(column.name): the table's \(type) cannot hold \(column.type)")
            }
            tableTypes.append(type)
        }
        for column in catalog.columns where column.notNull && !column.filledByTable {
            if contract.column(named: column.name) == nil {
                throw mismatch(
                    "column \(column.name): the table \(catalog.qualifiedName) requires it (NOT NULL, no default), and the contract does not declare it"
                )
            }
        }
        let declaredKey = contract.key.map { contract.columns[$0].name }
        if Set(declaredKey) != Set(catalog.primaryKey) {
            let ours =
                declaredKey.isEmpty
                ? "declares no key (constraints: [primary_key])" : "has the key (\(declaredKey.joined(separator: ", ")))"
            let theirs =
                catalog.primaryKey.isEmpty ? "has no primary key" : "has the primary key (\(catalog.primaryKey.joined(separator: ", ")))"
            throw mismatch(
                "key: the contract \(ours), the table \(catalog.qualifiedName) \(theirs); duplicates are found through the primary key, so the two must be the same"
            )
        }
        return LoadPlan(contract: contract, table: table, targetTable: catalog.qualifiedName, tableTypes: tableTypes)
    }
}
