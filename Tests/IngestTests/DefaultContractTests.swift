import Testing

@testable import Ingest

#if canImport(Glibc)
import Glibc
#endif

/// The default contract: the shipped file and the built-in copy are one text, and it reads as
/// the six e-commerce columns with the rules docs/validation.md describes.
@Suite struct DefaultContractTests {
    /// The package root, from this file's path (Tests/IngestTests/…).
    static var root: String {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }

    @Test func shippedFileIsTheBuiltInText() throws {
        let shipped = try readWholeFile(Self.root + "/contracts/ecommerce_events.yaml")
        #expect(shipped == Contract.ecommerceEventsYAML)
        let fromFile = try Contract.load(path: Self.root + "/contracts/ecommerce_events.yaml")
        var builtIn = Contract.ecommerceEvents
        builtIn.path = fromFile.path
        #expect(fromFile == builtIn)
    }

    @Test func readsAsTheSixEventColumns() {
        let c = Contract.ecommerceEvents
        #expect(c.table == TableName(schema: "public", name: "ecommerce_events"))
        #expect(c.deadLetterTable == TableName(schema: "public", name: "ecommerce_bad_records"))
        #expect(c.columns.map(\.name) == ["event_id", "user_id", "product_id", "event_type", "price", "event_timestamp"])
        #expect(c.columns.map(\.type) == [.uuid, .integer, .integer, .text, .numeric(precision: 10, scale: 2), .timestamptz])
        #expect(c.columns.map(\.notNull) == [true, true, true, true, false, true])
        #expect(c.key == [0])
        #expect(c.keyName == "event_id")
        #expect(c.checks.count == 2)
        #expect(c.columns[4].rules.scale == 2)
    }

    @Test func resolvesFlagThenEnvironmentThenDefault() throws {
        let dir = "/tmp/contract-resolve-\(getpid())"
        mkdir(dir, 0o700)
        defer { _ = unlink(dir + "/a.yaml"); rmdir(dir) }
        let text = "table: a\ncolumns:\n  - {name: id, data_type: bigint, constraints: [primary_key]}\n"
        let fd = open(dir + "/a.yaml", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
        #expect(try Contract.resolve(path: dir + "/a.yaml", environment: [:]).table.name == "a")
        #expect(try Contract.resolve(path: nil, environment: ["INGEST_CONTRACT": dir + "/a.yaml"]).table.name == "a")
        #expect(try Contract.resolve(path: nil, environment: [:]).table.name == "ecommerce_events")
        #expect(throws: ContractError.self) { try Contract.resolve(path: dir + "/missing.yaml", environment: [:]) }
    }

    @Test func aProblemNamesTheFileLineAndColumn() {
        let text = "table: t\ncolumns:\n  - name: id\n    data_type: intgr\n"
        #expect(
            throws: ContractError(
                path: "t.yaml", line: 4,
                problem: "column id: unknown data_type \"intgr\" (expected one of: \(ColumnType.spellings))")
        ) {
            try Contract.parse(text, path: "t.yaml")
        }
    }
}
