import ContractDrafting
import Foundation
import Ingest
import TestSupport
import Testing

/// The real `contract` executable: `init` from a sample and from a table's catalog,
/// `--create-table` with its grant, and `check` on good and hostile contracts.
@Suite(.serialized) struct ContractToolTests {
    func contractTool(_ arguments: [String], in folder: URL? = nil) throws -> ToolResult {
        try runTool(Executables.url("contract"), arguments, currentDirectory: folder, timeout: 60)
    }

    func folder(_ label: String) throws -> URL {
        let url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent(
            "contract-\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// csvsql's inference, and the tokens a time series uses for missing values.
    @Test func initFromASampleInfersTypesNullTokensAndTheKey() throws {
        let dir = try folder("sample")
        defer { try? FileManager.default.removeItem(at: dir) }
        try """
        id,Sensor,Reading,Taken At,Logged,OK,Device,Zip,Tags,Day
        1,7,21.50,2024-01-30 10:15:23,30/01/2024 10:15:23,true,6f1c8e52-4d0b-4a7c-9e1d-2b7a9c0e5f31,01234,a,2024-01-30
        2,7,NA,2024-01-30T10:16:23Z,31/01/2024 23:00:00,false,0e5a3f6c-8d2b-4f1a-9c3e-7b6d5a4f3e21,01235,,2024-01-31
        3,3000000000,\\N,2024-01-30 10:17:23+02:00,01/02/2024 00:00:01,f,0E5A3F6C-8D2B-4F1A-9C3E-7B6D5A4F3E22,01236,b,2024-02-29

        """.write(to: dir.appendingPathComponent("readings.csv"), atomically: true, encoding: .utf8)
        let result = try contractTool(["init", "--table", "public.readings", "--sample", "readings.csv"], in: dir)
        #expect(result.status == 0, "\(result.stderr)")
        let contract = try Contract.parse(result.stdout, path: "derived.yaml")
        let types = contract.columns.map { "\($0.name) \($0.type)\($0.notNull ? " not null" : "")" }
        #expect(
            types == [
                "id integer not null", "sensor bigint not null", "reading numeric(10,2)",
                "taken_at timestamp with time zone not null", "logged timestamp without time zone not null",
                "ok boolean not null", "device uuid not null", "zip text not null", "tags text", "day date not null",
            ])
        #expect(contract.columns[contract.column(named: "taken_at")!].source == "Taken At")
        #expect(contract.columns[contract.column(named: "logged")!].rules.formats == [.pattern("%d/%m/%Y %H:%M:%S")])
        #expect(Set(contract.columns[2].nullValues) == ["", "NA", "\\N"])
        #expect(contract.keyName == "id")
        #expect(result.stdout.contains("null_values: [\"\", \"NA\", \"\\\\N\"]"))
    }

    /// From the catalog: sql/postgres_setup.sql's events table gives the default contract's
    /// columns (ingestion_timestamp has a default, so it is left out, with a note).
    @Test func initFromTheCatalogReadsTypesNotNullAndPrimaryKey() throws {
        try TestDatabase.with { database in
            let result = try contractTool(["init", "--table", "public.ecommerce_events", "--db", database.conninfo])
            #expect(result.status == 0, "\(result.stderr)")
            let derived = try Contract.parse(result.stdout, path: "derived.yaml")
            let builtIn = Contract.ecommerceEvents
            #expect(derived.columns.map(\.name) == builtIn.columns.map(\.name))
            #expect(derived.columns.map(\.type) == builtIn.columns.map(\.type))
            #expect(derived.columns.map(\.notNull) == builtIn.columns.map(\.notNull))
            #expect(derived.keyName == "event_id")
            #expect(result.stderr.contains("column ingestion_timestamp: has a default"), "\(result.stderr)")

            let missing = try contractTool(["init", "--table", "no_such_table", "--db", database.conninfo])
            #expect(missing.status == 1)
            #expect(missing.stderr.contains("table no_such_table does not exist; give --sample"), "\(missing.stderr)")
        }
    }

    /// `--create-table`: the table as the contract declares it, its dead letters, and only
    /// SELECT and INSERT for ingest_loader. Names are quoted identifiers, so a hostile header
    /// becomes a column of that name, not SQL.
    @Test func createTableMakesTheTableTheDeadLettersAndALeastPrivilegeGrant() throws {
        try TestDatabase.with { database in
            let dir = try folder("create")
            defer { try? FileManager.default.removeItem(at: dir) }
            try """
            order_id,amount,"x""); DROP TABLE ecommerce_events; --"
            1,12.50,a
            2,NA,b

            """.write(to: dir.appendingPathComponent("orders.csv"), atomically: true, encoding: .utf8)
            let result = try contractTool(
                [
                    "init", "--table", "orders", "--sample", "orders.csv", "--create-table", "--db", database.conninfo, "--output",
                    "orders.yaml",
                ],
                in: dir)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.isEmpty)
            #expect(result.stderr.contains("orders and orders_bad_records ready"))
            let columns = try database.query(
                """
                SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a
                WHERE a.attrelid = 'public.orders'::regclass AND a.attnum > 0 ORDER BY a.attnum
                """)
            #expect(
                columns == [
                    ["order_id", "integer", "t"], ["amount", "numeric(10,2)", "f"], ["x_drop_table_ecommerce_events", "text", "t"],
                ])
            #expect(try database.scalar("SELECT count(*) FROM pg_class WHERE relname = 'ecommerce_events'") == "1")
            #expect(
                try database.scalar(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) WHERE i.indrelid = 'public.orders'::regclass AND i.indisprimary"
                ) == "order_id")
            for table in ["public.orders", "public.orders_bad_records"] {
                for (privilege, granted) in [("SELECT", "t"), ("INSERT", "t"), ("UPDATE", "f"), ("DELETE", "f"), ("TRUNCATE", "f")] {
                    #expect(
                        try database.scalar("SELECT has_table_privilege('ingest_loader', $1, $2)", [table, privilege]) == granted,
                        "\(table) \(privilege)")
                }
            }
            // ingest_loader can write a dead letter (the identity column needs no sequence grant).
            let connection = try database.connect()
            try connection.executeScript(
                "SET ROLE ingest_loader; INSERT INTO public.orders_bad_records (source_file, line_number, raw, reasons) VALUES ('f.csv', 2, '{}', '[]'); RESET ROLE;"
            )
            #expect(try database.scalar("SELECT count(*) FROM public.orders_bad_records") == "1")
            // A table name is a quoted identifier too.
            let odd = try contractTool(
                ["init", "--table", "odd\"name", "--sample", "orders.csv", "--create-table", "--db", database.conninfo], in: dir)
            #expect(odd.status == 0, "\(odd.stderr)")
            #expect(try database.scalar("SELECT count(*) FROM pg_class WHERE relname IN ('odd\"name', 'odd\"name_bad_records')") == "2")
            let written = try String(contentsOf: dir.appendingPathComponent("orders.yaml"), encoding: .utf8)
            #expect(written.contains("source: \"x\\\"); DROP TABLE ecommerce_events; --\""))
        }
    }

    /// `contract check`: exit 0 with a summary for good files; 64 with `file:line: column:
    /// problem` for a hostile one.
    @Test(arguments: [
        ("table: t\ncolumns:\n  - name: a\n    data_type: integr\n", "bad.yaml:4: column a: unknown data_type \"integr\""),
        ("table: t\ncolumns:\n  - name: a\n    data_type: integer\n    maxx: 3\n", "bad.yaml:5: a column: unknown key \"maxx\""),
        (
            "table: t\ncolumns:\n  - name: a\n    data_type: text\n    pattern: \"(ab\"\n",
            "bad.yaml:5: column a: pattern: not a POSIX extended regular expression"
        ),
        (
            "table: t\ncolumns:\n  - name: a\n    data_type: integer\n    range: {min: ten}\n",
            "bad.yaml:3: column a: range bound \"ten\" is not a value of type integer"
        ),
        (
            "table: t\ncolumns:\n  - name: a\n    data_type: text\nchecks:\n  - when: {column: b, is_null: true}\n    require: {column: a, is_null: true}\n",
            "bad.yaml:6: a check: when: no column named \"b\""
        ),
    ])
    func checkNamesTheFileLineColumnAndProblem(yaml: String, message: String) throws {
        let dir = try folder("check")
        defer { try? FileManager.default.removeItem(at: dir) }
        try yaml.write(to: dir.appendingPathComponent("bad.yaml"), atomically: true, encoding: .utf8)
        let result = try contractTool(["check", "bad.yaml"], in: dir)
        #expect(result.status == 64)
        #expect(result.stderr.hasPrefix("contract: " + message), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1)
    }

    @Test func checkAcceptsTheShippedContracts() throws {
        let root = TestDatabase.packageRoot.path
        let files =
            ["contracts/ecommerce_events.yaml"]
            + ["shipments", "support_tickets", "sensor_readings"].map { "contracts/examples/\($0).yaml" }
        let result = try runTool(Executables.url("contract"), ["check"] + files.map { "\(root)/\($0)" })
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("shipments.yaml: ok: table public.shipments, 17 columns, key shipment_id, 1 check"))
        let missing = try runTool(Executables.url("contract"), ["check", "/nonexistent/orders.yaml"])
        #expect(missing.status == 64)
        #expect(missing.stderr.hasPrefix("contract: /nonexistent/orders.yaml: cannot read the contract"), "\(missing.stderr)")
    }
}
