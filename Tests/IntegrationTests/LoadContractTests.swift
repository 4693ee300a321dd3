import Foundation
import Ingest
import Postgres
import TestSupport
import Testing

/// A contract file in a temporary folder, removed with the value.
final class ContractFile {
    let folder: URL
    let path: String

    init(_ yaml: String, name: String = "orders.yaml") throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("contract-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        path = folder.appendingPathComponent(name).path
        try Data(yaml.utf8).write(to: URL(fileURLWithPath: path))
    }

    deinit { try? FileManager.default.removeItem(at: folder) }
}

/// `load --contract`: the start-up check against the table's catalog, and a table of another
/// shape loaded by the real `validate --contract X | load --contract X`.
@Suite(.serialized) struct LoadContractTests {
    let load = Executables.url("load")
    let validate = Executables.url("validate")

    /// Orders, one row per order line: a composite key and one column of nearly every type.
    static let ordersYAML = """
        version: 1
        table: public.orders
        dead_letter_table: public.orders_bad_records
        primary_key: [order_id, line_no]
        columns:
          - {name: order_id, data_type: bigint}
          - {name: line_no, data_type: smallint}
          - {name: customer, data_type: varchar(20), constraints: [not_null]}
          - {name: total, data_type: "numeric(12,2)"}
          - {name: rate, data_type: double precision}
          - {name: paid, data_type: boolean}
          - {name: placed_on, data_type: date}
          - {name: placed_at, data_type: timestamptz}
          - {name: local_at, data_type: timestamp}
          - {name: ref, data_type: uuid}
          - {name: meta, data_type: jsonb}
          - {name: note, data_type: text}
        """

    static let ordersTable = """
        CREATE TABLE public.orders (
            order_id bigint, line_no smallint, customer varchar(20) NOT NULL, total numeric(12,2) CHECK (total >= 0),
            rate double precision, paid boolean, placed_on date, placed_at timestamptz, local_at timestamp, ref uuid,
            meta jsonb, note text, loaded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (order_id, line_no));
        CREATE TABLE public.orders_bad_records (LIKE public.ecommerce_bad_records INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        """

    struct Mismatch: CustomStringConvertible, Sendable {
        var table: String
        var yaml: String
        var message: String
        var description: String { message }
    }

    static let mismatches: [Mismatch] = [
        Mismatch(
            table: "order_id bigint PRIMARY KEY",
            yaml: "  - {name: order_id, data_type: bigint, constraints: [primary_key]}\n  - {name: total, data_type: \"numeric(12,2)\"}",
            message: "column total: not in the table public.orders"),
        Mismatch(
            table: "order_id bigint PRIMARY KEY, total numeric(8,2)",
            yaml: "  - {name: order_id, data_type: bigint, constraints: [primary_key]}\n  - {name: total, data_type: \"numeric(12,2)\"}",
            message: "column total: the table's numeric(8,2) cannot hold numeric(12,2)"),
        Mismatch(
            table: "order_id smallint PRIMARY KEY", yaml: "  - {name: order_id, data_type: integer, constraints: [primary_key]}",
            message: "column order_id: the table's smallint cannot hold integer"),
        Mismatch(
            table: "order_id bigint PRIMARY KEY, placed_at timestamp",
            yaml: "  - {name: order_id, data_type: bigint, constraints: [primary_key]}\n  - {name: placed_at, data_type: timestamptz}",
            message: "column placed_at: the table's timestamp without time zone cannot hold timestamp with time zone"),
        Mismatch(
            table: "order_id bigint PRIMARY KEY, tags text[]",
            yaml: "  - {name: order_id, data_type: bigint, constraints: [primary_key]}\n  - {name: tags, data_type: text}",
            message: "column tags: the table's type text[] is not one load writes"),
        Mismatch(
            table: "order_id bigint PRIMARY KEY, created_by text NOT NULL, created_at timestamptz NOT NULL DEFAULT now()",
            yaml: "  - {name: order_id, data_type: bigint, constraints: [primary_key]}",
            message: "column created_by: the table public.orders requires it (NOT NULL, no default), and the contract does not declare it"),
        Mismatch(
            table: "order_id bigint, line_no smallint, PRIMARY KEY (order_id, line_no)",
            yaml: "  - {name: order_id, data_type: bigint, constraints: [primary_key]}\n  - {name: line_no, data_type: smallint}",
            message:
                "key: the contract has the key (order_id), the table public.orders has the primary key (order_id, line_no); duplicates are found through the primary key, so the two must be the same"
        ),
        Mismatch(
            table: "order_id bigint PRIMARY KEY", yaml: "  - {name: order_id, data_type: bigint}",
            message:
                "key: the contract declares no key (constraints: [primary_key]), the table public.orders has the primary key (order_id)"),
        Mismatch(
            table: "order_id bigint", yaml: "  - {name: order_id, data_type: bigint, constraints: [primary_key]}",
            message: "key: the contract has the key (order_id), the table public.orders has no primary key"),
        Mismatch(
            table: "order_id bigint PRIMARY KEY, total numeric GENERATED ALWAYS AS (order_id * 2) STORED",
            yaml: "  - {name: order_id, data_type: bigint, constraints: [primary_key]}\n  - {name: total, data_type: numeric}",
            message: "column total: a generated column of public.orders, which COPY cannot write"),
    ]

    @Test(arguments: mismatches)
    func aContractTheTableCannotTakeStopsWithExit64(_ mismatch: Mismatch) throws {
        try TestDatabase.with { db in
            try db.query("CREATE TABLE public.orders (\(mismatch.table))")
            try db.query("CREATE TABLE public.orders_bad_records (LIKE public.ecommerce_bad_records INCLUDING DEFAULTS)")
            let contract = try ContractFile(
                "version: 1\ntable: public.orders\ndead_letter_table: public.orders_bad_records\ncolumns:\n\(mismatch.yaml)\n")
            let f = try LoadFixture()
            let lines = try f.file("a.csv", valid: 1, rejects: 0)
            let result = try runTool(load, f.arguments(db, ["--contract", contract.path]), stdin: stdinData(lines), timeout: 30)
            #expect(result.status == 64, "\(result.stderr)")
            #expect(result.stderr.contains("\(contract.path): \(mismatch.message)"), "\(result.stderr)")
            #expect(result.stderr.split(separator: "\n").filter { $0.contains(contract.path) }.count == 1)
            #expect(try count(db, "SELECT count(*) FROM ingest_checkpoints") == 0)
        }
    }

    /// INGEST_CONTRACT names the contract when --contract does not; a missing table is still a
    /// permanent error (exit 1, 42P01), as without contracts.
    @Test func theEnvironmentNamesTheContractAndAMissingTableIsPermanent() throws {
        try TestDatabase.with { db in
            let contract = try ContractFile(Self.ordersYAML)
            let f = try LoadFixture()
            var environment = ProcessInfo.processInfo.environment
            environment["INGEST_CONTRACT"] = contract.path
            let missing = try runTool(load, f.arguments(db), stdin: Data(), environment: environment, timeout: 30)
            #expect(missing.status == 1, "\(missing.stderr)")
            #expect(missing.stderr.contains("42P01"))
            #expect(missing.stderr.contains("orders"))
            try db.query("CREATE TABLE public.orders (order_id bigint PRIMARY KEY)")
            try db.query("CREATE TABLE public.orders_bad_records (LIKE public.ecommerce_bad_records INCLUDING DEFAULTS)")
            let mismatch = try runTool(load, f.arguments(db), stdin: Data(), environment: environment, timeout: 30)
            #expect(mismatch.status == 64)
            #expect(mismatch.stderr.contains("\(contract.path): column line_no: not in the table public.orders"), "\(mismatch.stderr)")
        }
    }

    /// The rows as `watch` would read them (raw cell strings), and the same valid rows as CSV.
    static let cells: [[String]] = [
        [
            "1", "1", "ACME", "12.5", "0.25", "yes", "2024-02-29", "2024-02-29T23:59:59.999999Z", "1969-07-20 20:17:40",
            "6F9619FF-8B86-D011-B42D-00C04FC964FF", #"{"sku": "A-1", "qty": 2}"#, "tab\tand \"quotes\"",
        ],
        [
            "1", "2", "ACME", "0", "-1.5e-300", "no", "1900-01-01", "1960-01-01T00:00:00Z", "2100-12-31 23:59:59.999",
            "00000000-0000-0000-0000-000000000000", "[]", "",
        ],
        [
            "9223372036854775807", "32767", "Ünïcødé GmbH", "9999999999.99", "NaN", "true", "2038-01-20", "2038-01-19T03:14:08.001+02:00",
            "2038-01-19 03:14:08", "ffffffff-ffff-ffff-ffff-ffffffffffff", #""a string""#, "line\nbreak",
        ],
        [
            "-9223372036854775808", "-32768", "x", "", "Infinity", "false", "0001-01-01", "0001-01-01T00:00:00Z", "0001-01-01 00:00:00",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", #"{"a": null}"#, "back\\slash",
        ],
        ["2", "1", "NULLS", "", "", "", "", "", "", "", "", ""],
    ]
    static let header = [
        "order_id", "line_no", "customer", "total", "rate", "paid", "placed_on", "placed_at", "local_at", "ref", "meta", "note",
    ]

    static func recordLine(_ file: String, _ line: Int, _ cells: [String]) -> String {
        var object: [String] = [#""kind":"record""#, #""file":"\#(file)""#, #""line":\#(line)"#]
        for (name, cell) in zip(header, cells) { object.append("\(jsonString(name)):\(jsonString(cell))") }
        return "{" + object.joined(separator: ",") + "}"
    }

    static func jsonString(_ s: String) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: s, options: .fragmentsAllowed), as: UTF8.self)
    }

    static func csvField(_ s: String) -> String { "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }

    @Test func aContractOfAnotherShapeLoadsWhatPsqlCopyStores() throws {
        try TestDatabase.with { db in
            for statement in Self.ordersTable.split(separator: ";") where !statement.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
            {
                try db.query(String(statement))
            }
            let contract = try ContractFile(Self.ordersYAML)
            let f = try LoadFixture()
            // An order line already in the table (a duplicate by the composite key), one the
            // table's CHECK refuses, one validate rejects (varchar(20) too long).
            try db.query("INSERT INTO orders (order_id, line_no, customer) VALUES (5, 1, 'earlier')")
            var lines = Self.cells.enumerated().map { Self.recordLine("orders.csv", $0.offset + 2, $0.element) }
            var extra = Self.cells[0]
            extra[0] = "5"
            lines.append(Self.recordLine("orders.csv", 7, extra))
            extra[0] = "6"
            extra[3] = "-1.00"
            lines.append(Self.recordLine("orders.csv", 8, extra))
            extra[0] = "7"
            extra[2] = String(repeating: "y", count: 21)
            lines.append(Self.recordLine("orders.csv", 9, extra))
            // The source file is an e-commerce file of the same name, loaded into the events table
            // after this: the same name, size and SHA-256 in two tables.
            let events = try f.file("orders.csv", valid: 2, rejects: 0)
            let digest = try FileDigest.of(path: f.incoming.appendingPathComponent("orders.csv").path)
            lines.append(
                #"{"kind":"eof","file":"orders.csv","rows":\#(lines.count),"bytes":\#(digest.bytes),"sha256":"\#(digest.sha256)"}"#)

            let validated = try runTool(validate, ["--contract", contract.path], stdin: stdinData(lines))
            #expect(validated.status == 0, "\(validated.stderr)")
            let loaded = try runTool(
                load, f.arguments(db, ["--contract", contract.path, "--keep"]), stdin: Data(validated.stdout.utf8), timeout: 60)
            #expect(loaded.status == 0, "\(loaded.stderr)")

            // The same valid rows through psql's \copy into a twin table.
            try db.query("CREATE TABLE orders_copy (LIKE orders INCLUDING DEFAULTS)")
            var text = Self.header.joined(separator: ",") + "\n"
            for row in Self.cells { text += row.map { $0.isEmpty ? "" : Self.csvField($0) }.joined(separator: ",") + "\n" }
            let csvPath = f.root.appendingPathComponent("valid.csv").path
            try Data(text.utf8).write(to: URL(fileURLWithPath: csvPath))
            let columns = Self.header.joined(separator: ", ")
            let psql = try runTool(
                URL(fileURLWithPath: "/usr/bin/psql"),
                [db.conninfo, "-v", "ON_ERROR_STOP=1", "-c", "\\copy orders_copy (\(columns)) FROM '\(csvPath)' WITH (FORMAT csv, HEADER)"])
            #expect(psql.status == 0, "\(psql.stderr)")
            #expect(try count(db, "SELECT count(*) FROM orders") == Self.cells.count + 1)
            let differing = try count(
                db,
                """
                SELECT count(*) FROM (
                  (SELECT \(columns) FROM orders WHERE customer <> 'earlier' EXCEPT SELECT \(columns) FROM orders_copy)
                  UNION ALL (SELECT \(columns) FROM orders_copy EXCEPT SELECT \(columns) FROM orders WHERE customer <> 'earlier')) d
                """)
            #expect(differing == 0)

            // Dead letters in the contract's table, with the key's name in the duplicate's reason.
            let reasons = try db.query("SELECT line_number, reasons->0->>'reason' FROM orders_bad_records ORDER BY line_number")
            #expect(reasons.count == 3, "\(reasons)")
            #expect(reasons.first?[1] == "duplicate key (order_id, line_no) (already in the table)")
            #expect(reasons.dropFirst().first?[1]?.contains("database refused the row: ERROR 23514") == true)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_bad_records") == 0)
            #expect(
                try db.scalar(
                    "SELECT target_table || ' ' || rows_loaded || ' ' || rows_rejected FROM ingest_checkpoints WHERE source_file = 'orders.csv'"
                )
                    == "public.orders \(Self.cells.count) 3")

            // The same file again is skipped; the same file into another table is not (the
            // checkpoints are keyed by table).
            let again = try runTool(
                load, f.arguments(db, ["--contract", contract.path, "--keep"]), stdin: Data(validated.stdout.utf8), timeout: 60)
            #expect(again.stderr.contains("orders.csv: already committed, skipped"), "\(again.stderr)")
            let other = try runTool(load, f.arguments(db, ["--keep"]), stdin: stdinData(events), timeout: 60)
            #expect(other.status == 0, "\(other.stderr)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 2)
            #expect(try count(db, "SELECT count(DISTINCT target_table) FROM ingest_checkpoints WHERE source_file = 'orders.csv'") == 2)
        }
    }
}
