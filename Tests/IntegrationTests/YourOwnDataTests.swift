import Foundation
import Ingest
import TestSupport
import Testing

/// README's "Your own data", walked as a new user would, in a copy of the project against the
/// test database, every block run exactly as written: the sample file, `bin/contract init …
/// --create-table`, `validate --contract … orders.csv`, and the job with `INGEST_CONTRACT`; then
/// the table holds the file's rows, typed, with its NULL tokens as NULL, once.
@Suite(.serialized) struct YourOwnDataTests {
    @Test func theWalkFromACSVFileToATable() throws {
        try TestDatabase.with { db in
            let copy = try ProjectCopy()
            var env = ProcessInfo.processInfo.environment
            env["PGDATABASE"] = db.name
            env["INGEST_BIN_DIR"] = Executables.directory.path
            let readme = try String(contentsOf: copy.url("README.md"), encoding: .utf8)
            let blocks = shellBlocks(try #require(Self.section("Your own data", of: readme)))
            #expect(blocks.count == 4, "\(blocks)")
            guard blocks.count == 4 else { return }

            // The sample, and step 1 as written.
            for block in blocks.prefix(2) {
                let result = try copy.bash(block, environment: env)
                #expect(result.status == 0, "\(block)\n\(result.stderr)")
            }
            #expect(blocks[1] == "bin/contract init --table orders --sample orders.csv --create-table > contracts/orders.yaml")
            let contractPath = copy.url("contracts/orders.yaml").path
            let contract = try Contract.load(path: contractPath)
            #expect(
                contract.columns.map { "\($0.name) \($0.type)\($0.notNull ? " not null" : "")" } == [
                    "order_id integer not null", "customer text not null", "amount numeric(10,2)",
                    "placed_at timestamp without time zone not null", "note text",
                ])
            #expect(contract.keyName == "order_id")
            #expect(contract.columns[0].source == "Order ID")
            #expect(contract.columns[2].nullValues == ["", "NA"])
            #expect(
                try db.query(
                    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'orders' ORDER BY ordinal_position")
                    == [
                        ["order_id", "integer"], ["customer", "text"], ["amount", "numeric"], ["placed_at", "timestamp without time zone"],
                        ["note", "text"],
                    ])
            #expect(try db.scalar("SELECT has_table_privilege('ingest_loader', 'public.orders_bad_records', 'INSERT')") == "t")

            // Step 2 as written: what the contract would reject, and why (the summary on stderr).
            #expect(blocks[2] == ".build/release/validate --contract contracts/orders.yaml --summary orders.csv > /dev/null")
            let review = try copy.bash(blocks[2], environment: env)
            #expect(review.status == 0, "\(review.stderr)")
            #expect(review.stderr.hasPrefix("rows in   3\nvalid     3\nrejected  0\n"), "\(review.stderr)")

            // Step 3 as written: the job loads the file into orders, exactly once.
            #expect(blocks[3].hasPrefix("cp orders.csv data/incoming/ && INGEST_CONTRACT=contracts/orders.yaml bin/pipeline --once\n"))
            let load = try copy.bash(blocks[3], environment: env, timeout: 90)
            #expect(load.status == 0, "\(load.stderr)")
            #expect(load.stdout.contains("Ann Lee") && load.stdout.contains("(3 rows)"), "\(load.stdout)")
            #expect(
                try db.query("SELECT order_id, customer, amount, placed_at, note FROM orders ORDER BY order_id") == [
                    ["1001", "Ann Lee", "12.50", "2024-01-30 10:15:23", nil],
                    ["1002", "Bo Chen", "7.00", "2024-01-30 11:02:00", "gift, wrapped"],
                    ["1003", "Cy Diaz", nil, "2024-01-31 09:00:00", nil],
                ])
            #expect(try db.scalar("SELECT count(*) FROM orders_bad_records") == "0")
            #expect(copy.files("data/incoming").isEmpty)
            // Again: the file is committed, nothing loads twice.
            let again = try copy.bash(blocks[3], environment: env, timeout: 90)
            #expect(again.status == 0, "\(again.stderr)")
            #expect(try db.scalar("SELECT count(*) FROM orders") == "3")
        }
    }

    /// The text of a README section, from its `## title` to the next `## `.
    static func section(_ title: String, of markdown: String) -> String? {
        guard let start = markdown.range(of: "\n## \(title)\n") else { return nil }
        let rest = markdown[start.upperBound...]
        let end = rest.range(of: "\n## ")?.lowerBound ?? rest.endIndex
        return String(rest[..<end])
    }
}
