import Foundation
import Ingest
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// README's "Your own data", walked as a new user would, in a copy of the project against the
/// test database: its sample file and `bin/contract init … --create-table` run exactly as
/// written; the review step runs `validate --contract` on the rows of that file.
///
/// The README's `validate … orders.csv` and `bin/pipeline --once` blocks need `watch`'s header
/// mapping through a contract and `load`'s contract support (issue 21, other branches): until
/// they land, the second step feeds `validate` the records `watch` will write for the file (the
/// header mapped through the contract's sources), and the third is pinned as text only. When
/// they land, run those two blocks as written here and compare `orders` with the file.
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

            // Step 2: what the contract accepts, on the rows of the user's file.
            #expect(blocks[2].contains(".build/release/validate --contract contracts/orders.yaml --summary orders.csv > /dev/null"))
            let records = try Self.records(of: copy.url("orders.csv").path, through: contract)
            let validated = try runTool(
                Executables.url("validate"), ["--contract", "contracts/orders.yaml", "--summary"], stdin: Data(records.utf8),
                currentDirectory: copy.root)
            #expect(validated.status == 0, "\(validated.stderr)")
            #expect(validated.stderr.hasPrefix("rows in   3\nvalid     3\nrejected  0\n"), "\(validated.stderr)")
            let lines = validated.lines
            #expect(lines.count == 3)
            if lines.count == 3 {
                #expect(
                    lines[0].contains(
                        #""order_id":1001,"customer":"Ann Lee","amount":"12.50","placed_at":"2024-01-30T10:15:23.000","note":null"#))
                #expect(lines[1].contains(#""note":"gift, wrapped""#))
                #expect(lines[2].contains(#""amount":null"#) && lines[2].contains(#""note":null"#))
            }

            // Step 3, pinned as the README writes it.
            #expect(blocks[3].hasSuffix("cp orders.csv data/incoming/ && INGEST_CONTRACT=contracts/orders.yaml bin/pipeline --once"))
        }
    }

    /// The text of a README section, from its `## title` to the next `## `.
    static func section(_ title: String, of markdown: String) -> String? {
        guard let start = markdown.range(of: "\n## \(title)\n") else { return nil }
        let rest = markdown[start.upperBound...]
        let end = rest.range(of: "\n## ")?.lowerBound ?? rest.endIndex
        return String(rest[..<end])
    }

    /// The records `watch` writes for a CSV file under a contract: each header cell mapped
    /// through the columns' sources, the cells as read.
    static func records(of path: String, through contract: Contract) throws -> String {
        let fd = open(path, O_RDONLY)
        #expect(fd >= 0, "\(path)")
        defer { close(fd) }
        let reader = CSVReader(fd: fd)
        let header = try #require(try reader.nextRow())
        let columns = (0..<header.fieldCount).map { contract.column(source: reader.fieldString($0)) }
        var out: [UInt8] = []
        while let row = try reader.nextRow() {
            var w = JSONWriter()
            w.beginObject(&out)
            w.key("kind", &out)
            w.string("record", &out)
            w.key("file", &out)
            w.string("orders.csv", &out)
            w.key("line", &out)
            w.int(row.line, &out)
            for index in 0..<row.fieldCount {
                guard let column = columns[index] else { continue }
                w.key(contract.columns[column].name, &out)
                w.string(reader.fieldString(index), &out)
            }
            w.endLine(&out)
        }
        return String(decoding: out, as: UTF8.self)
    }
}
