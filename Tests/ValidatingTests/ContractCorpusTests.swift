import Testing

@testable import Ingest
@testable import Validating

#if canImport(Glibc)
import Glibc
#endif

/// The package's root, for contracts/examples.
private let packageRoot: String = {
    var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)  // Tests/IngestTests/ContractCorpusTests.swift
    return parts.joined(separator: "/")
}()

private func example(_ name: String) throws -> Contract {
    try Contract.load(path: "\(packageRoot)/contracts/examples/\(name).yaml")
}

/// `validate --contract` over records: what one row's outcome is.
private struct Outcome {
    var record: String?
    var reasons: [RejectReason]
}

/// A record line with the columns' raw texts (what `watch` writes for a CSV row).
private func recordLine(_ cells: [(String, String)], line: Int = 2) -> [UInt8] {
    var out: [UInt8] = []
    var w = JSONWriter()
    w.beginObject(&out)
    w.key("kind", &out)
    w.string("record", &out)
    w.key("file", &out)
    w.string("sample.csv", &out)
    w.key("line", &out)
    w.int(line, &out)
    for (name, value) in cells {
        w.key(name, &out)
        w.string(value, &out)
    }
    w.endObject(&out)
    return out
}

private func validate(_ lines: [[UInt8]], _ contract: Contract, now: String) -> [Outcome] {
    let clock = UTCTimestamp(parsing: now)!
    var stage = StreamValidator(rules: ValidationRules(contract: contract), clock: { clock })
    var decoder = LineDecoder()
    return lines.map { line in
        var out: [UInt8] = []
        line.withUnsafeBytes { _ = stage.process($0, inputLine: 1, into: &out) }
        return out.dropLast().withUnsafeBytes { raw in
            let scanned = try! decoder.decode(UnsafeRawBufferPointer(raw))
            let text = String(decoding: raw, as: UTF8.self)
            return scanned.kind == .reject ? Outcome(record: nil, reasons: scanned.reasons()) : Outcome(record: text, reasons: [])
        }
    }
}

/// A sample CSV read as `watch` reads it, each header cell mapped through the contract's
/// `source` names: the record lines, one per row.
private func sampleRecords(_ name: String, _ contract: Contract) throws -> [[UInt8]] {
    let path = "\(packageRoot)/contracts/examples/\(name).csv"
    let fd = open(path, O_RDONLY)
    #expect(fd >= 0, "\(path)")
    defer { close(fd) }
    let reader = CSVReader(fd: fd)
    let header = try #require(try reader.nextRow())
    let columns = (0..<header.fieldCount).map { contract.column(source: reader.fieldString($0)) }
    #expect(columns.allSatisfy { $0 != nil }, "a header cell of \(name).csv names no column")
    var lines: [[UInt8]] = []
    while let row = try reader.nextRow() {
        #expect(row.problem == nil && row.fieldCount == header.fieldCount, "\(name).csv:\(row.line)")
        let cells = (0..<row.fieldCount).map { (contract.columns[columns[$0]!].name, reader.fieldString($0)) }
        lines.append(recordLine(cells, line: row.line))
    }
    return lines
}

/// One broken rule: the column, the text that breaks it, and what validate says.
struct BrokenCase: CustomStringConvertible, Sendable {
    var column: String
    var value: String
    var field: String
    var reason: String
    init(_ column: String, _ value: String, _ reason: String, field: String? = nil) {
        self.column = column
        self.value = value
        self.reason = reason
        self.field = field ?? column
    }
    var description: String { "\(column)=\(value.prefix(30)) → \(reason)" }
}

private let shipmentRow: [(String, String)] = [
    ("shipment_id", "6f1c8e52-4d0b-4a7c-9e1d-2b7a9c0e5f31"), ("warehouse", "12"), ("order_number", "1001"),
    ("tracking_number", "1000000001"), ("declared_value", "99.90"), ("weight_kg", "2.5"), ("distance_km", "120.75"),
    ("recipient", "Ann Lee"), ("country_code", "DE"), ("carrier", "DHL"), ("insured", "yes"), ("ship_date", "2024-01-30"),
    ("packed_at", "2024-01-30 08:00:00"), ("delivered_at", "2024-01-31T10:00:00Z"),
    ("label_id", "0e5a3f6c-8d2b-4f1a-9c3e-7b6d5a4f3e21"), ("attributes", #"{"fragile":true}"#), ("priority", "2"),
]

private let ticketRow: [(String, String)] = [
    ("ticket_id", "TCK-000001"), ("subject", "Printer"), ("body", "b"), ("status", "open"), ("resolution", ""),
    ("opened_at", "2024-01-30T10:15:23Z"),
]

private let readingRow: [(String, String)] = [
    ("sensor_id", "17"), ("read_at", "30/01/2024 06:00:00"), ("uploaded_at", "30/01/2024 06:05:12 +05:30"),
    ("temperature_c", "21.5"), ("humidity_pct", "40.25"), ("battery_v", "3.7"), ("status", "ok"),
]

private func replacing(_ row: [(String, String)], _ column: String, _ value: String) -> [(String, String)] {
    row.map { $0.0 == column ? ($0.0, value) : $0 }
}

@Suite struct ContractCorpusTests {
    @Test(arguments: ["shipments", "support_tickets", "sensor_readings"])
    func everySampleRowIsValid(name: String) throws {
        let contract = try example(name)
        let outcomes = validate(try sampleRecords(name, contract), contract, now: "2030-01-01T00:00:00Z")
        #expect(outcomes.count >= 5)
        for outcome in outcomes { #expect(outcome.record != nil, "\(outcome.reasons)") }
    }

    @Test func textKeepsQuotesCommasLineBreaksAndSpaces() throws {
        let contract = try example("support_tickets")
        let records = validate(try sampleRecords("support_tickets", contract), contract, now: "2030-01-01T00:00:00Z").compactMap(\.record)
        #expect(records[0].contains(#""body":"It said \"low toner\", then smoke.\nPlease advise.""#))
        #expect(records[0].contains(#""status":"closed""#))  // accepted values written as listed
        #expect(
            records[1].contains(#""body":"Steps:\n1. open the app\n2. type password\n3. \"Invalid credentials\"\n\nTried twice, same.""#))
        #expect(records[1].contains(#""resolution":null"#))
        #expect(records[3].contains("日本語"))
        #expect(records[4].contains(#""subject":"  Leading spaces kept  ""#))
        #expect(records[1].contains(#""opened_at":"2024-01-30T10:02:00.000Z""#))
    }

    @Test func nullTokensAndTheLoggersClock() throws {
        let contract = try example("sensor_readings")
        let records = validate(try sampleRecords("sensor_readings", contract), contract, now: "2030-01-01T00:00:00Z").compactMap(\.record)
        #expect(records.count == 6)
        // 06:00 at +05:30 is 00:30 UTC; an offset in the value wins over the column's zone.
        #expect(records[0].contains(#""read_at":"2024-01-30T00:30:00.000Z""#))
        #expect(records[3].contains(#""uploaded_at":"2024-01-30T00:35:40.000Z""#))
        #expect(records[1].contains(#""humidity_pct":null"#))
        #expect(records[2].contains(#""uploaded_at":null,"temperature_c":null"#))
        #expect(records[2].contains(#""status":null"#))
        #expect(records[3].contains(#""battery_v":null"#))
        #expect(records[4].contains(#""uploaded_at":null"#))
        #expect(records[5].contains(#""read_at":"2024-02-29T18:29:59.000Z""#))  // a leap day
    }

    static let shipmentCases: [BrokenCase] = [
        BrokenCase("shipment_id", "", "required"), BrokenCase("shipment_id", "not-a-uuid", "not a UUID"),
        BrokenCase("warehouse", "0", "out of range 1…500"), BrokenCase("warehouse", "501", "out of range 1…500"),
        BrokenCase("warehouse", "x", "not an integer"), BrokenCase("order_number", "0", "must be > 0"),
        BrokenCase("order_number", "2147483648", "out of range for integer"),
        BrokenCase("tracking_number", "999999999", "must be >= 1000000000"),
        BrokenCase("tracking_number", "9223372036854775808", "out of range for bigint"),
        BrokenCase("declared_value", "-0.01", "must be >= 0"), BrokenCase("declared_value", "1000000000", "must be < 1000000000"),
        BrokenCase("declared_value", "1.005", "more than two decimal places"), BrokenCase("declared_value", "abc", "not a decimal"),
        BrokenCase("weight_kg", "0", "must be > 0"), BrokenCase("weight_kg", "30000.5", "must be <= 30000"),
        BrokenCase("weight_kg", "heavy", "not a number"), BrokenCase("distance_km", "-1", "must be >= 0"),
        BrokenCase("recipient", "A", "shorter than 2 characters"),
        BrokenCase("recipient", String(repeating: "a", count: 201), "longer than 200 characters"),
        BrokenCase("recipient", "", "required"), BrokenCase("country_code", "de", "does not match the pattern"),
        BrokenCase("country_code", "DEU", "longer than 2 characters"),
        BrokenCase("carrier", "royal mail", "unknown carrier (expected dhl, ups, fedex, usps)"),
        BrokenCase("insured", "maybe", "not a boolean"), BrokenCase("ship_date", "1999-12-31", "must be >= 2000-01-01"),
        BrokenCase("ship_date", "2023-02-29", "no such date"), BrokenCase("ship_date", "30/01/2024", "not a date"),
        BrokenCase("packed_at", "2024-01-30 25:00:00", "not a date-time"),
        BrokenCase("delivered_at", "2024-02-01T02:00:00Z", "more than 1 hour in the future"),
        BrokenCase("label_id", "123", "not a UUID"), BrokenCase("attributes", "{fragile}", "not JSON"),
        BrokenCase("priority", "4", "unknown priority (expected 1, 2, 3)"),
        BrokenCase("priority", "70000", "out of range for smallint"),
        BrokenCase("packed_at", "", "required when delivered_at is set"),
    ]

    @Test(arguments: shipmentCases)
    func shipmentsRuleBroken(_ broken: BrokenCase) throws {
        let contract = try example("shipments")
        let outcome = validate([recordLine(replacing(shipmentRow, broken.column, broken.value))], contract, now: "2024-02-01T00:00:00Z")
        #expect(outcome[0].reasons.map(\.field) == [broken.field])
        #expect(outcome[0].reasons.map(\.reason) == [broken.reason])
    }

    static let ticketCases: [BrokenCase] = [
        BrokenCase("ticket_id", "TCK-1", "does not match the pattern"),
        BrokenCase("ticket_id", "TCK-000000001", "longer than 12 characters"), BrokenCase("ticket_id", "", "required"),
        BrokenCase("subject", "Hi", "shorter than 3 characters"),
        BrokenCase("subject", String(repeating: "é", count: 121), "longer than 120 characters"),
        BrokenCase("body", String(repeating: "b", count: 5001), "longer than 5000 characters"),
        BrokenCase("body", "a\u{0}b", "contains a NUL byte"),
        BrokenCase("status", "done", "unknown status (expected open, pending, closed)"),
        BrokenCase("status", "closed", "required for a closed ticket", field: "resolution"),
        BrokenCase("opened_at", "", "required"), BrokenCase("opened_at", "yesterday", "not a date-time"),
    ]

    @Test(arguments: ticketCases)
    func supportTicketsRuleBroken(_ broken: BrokenCase) throws {
        let contract = try example("support_tickets")
        let outcome = validate([recordLine(replacing(ticketRow, broken.column, broken.value))], contract, now: "2024-02-01T00:00:00Z")
        #expect(outcome[0].reasons.map(\.field) == [broken.field])
        #expect(outcome[0].reasons.map(\.reason) == [broken.reason])
    }

    static let readingCases: [BrokenCase] = [
        BrokenCase("sensor_id", "0", "out of range 1…9999"), BrokenCase("sensor_id", "NA", "required"),
        BrokenCase("read_at", "2024-01-30T06:00:00", "not a date-time"), BrokenCase("read_at", "31/02/2024 06:00:00", "no such date"),
        BrokenCase("read_at", "\\N", "required"), BrokenCase("read_at", "30/01/2024 06:45:00", "more than 10 minutes in the future"),
        BrokenCase("uploaded_at", "30/01/2024 06:05:12", "not a date-time"),
        BrokenCase("temperature_c", "-80.5", "out of range -80…60"), BrokenCase("temperature_c", "hot", "not a number"),
        BrokenCase("humidity_pct", "100.01", "out of range 0…100"), BrokenCase("humidity_pct", "40.255", "more than two decimal places"),
        BrokenCase("battery_v", "0", "must be > 0"),
        // status has its own null_values ([NA]): the file's \N is a value there, and not an accepted one.
        BrokenCase("status", "\\N", "unknown status (expected ok, degraded, fault)"),
    ]

    @Test(arguments: readingCases)
    func sensorReadingsRuleBroken(_ broken: BrokenCase) throws {
        let contract = try example("sensor_readings")
        let outcome = validate([recordLine(replacing(readingRow, broken.column, broken.value))], contract, now: "2024-01-30T01:00:00Z")
        #expect(outcome[0].reasons.map(\.field) == [broken.field])
        #expect(outcome[0].reasons.map(\.reason) == [broken.reason])
    }

    /// The key: one column (`duplicate shipment_id`) or two (`duplicate key (sensor_id, read_at)`).
    @Test func repeatedKeysWithinAFile() throws {
        let shipments = try example("shipments")
        let first = validate([recordLine(shipmentRow), recordLine(shipmentRow, line: 3)], shipments, now: "2024-02-01T00:00:00Z")
        #expect(first[0].record != nil)
        #expect(first[1].reasons.map(\.reason) == ["duplicate shipment_id (earlier in this file)"])
        let readings = try example("sensor_readings")
        let second = validate(
            [
                recordLine(readingRow), recordLine(replacing(readingRow, "temperature_c", "1"), line: 3),
                recordLine(replacing(readingRow, "sensor_id", "18"), line: 4),
            ],
            readings, now: "2024-01-30T01:00:00Z")
        #expect(second[0].record != nil && second[2].record != nil)
        #expect(second[1].reasons.map(\.field) == ["key (sensor_id, read_at)"])
        #expect(second[1].reasons.map(\.reason) == ["duplicate key (sensor_id, read_at) (earlier in this file)"])
    }
}

/// Contracts that cannot be used: each gives `path:line: problem` (ContractError), which every
/// stage prints before exiting 64.
@Suite struct HostileContractTests {
    static let cases: [(String, String)] = [
        (
            "table: t\ncolumns:\n  - name: a\n    data_type: integr\n",
            "x.yaml:4: column a: unknown data_type \"integr\" (expected one of: \(ColumnType.spellings))"
        ),
        (
            "table: t\ncolumns:\n  - name: a\n    data_type: integer\n    maxx: 3\n",
            "x.yaml:5: a column: unknown key \"maxx\" (expected one of: \(ContractReader.columnKeys.joined(separator: ", ")))"
        ),
        (
            "table: t\ncolumns:\n  - name: a\n    data_type: text\n    pattern: \"(ab\"\n",
            "x.yaml:5: column a: pattern: not a POSIX extended regular expression: Unmatched ( or \\("
        ),
        (
            "table: t\ncolumns:\n  - name: a\n    data_type: text\n    pattern: \"(a)\\\\1\"\n",
            "x.yaml:5: column a: pattern: backreferences (\\1…\\9) are not supported"
        ),
        (
            "table: t\ncolumns:\n  - name: a\n    data_type: integer\n    range: {min: ten}\n",
            "x.yaml:3: column a: range bound \"ten\" is not a value of type integer"
        ),
        (
            "table: t\ncolumns:\n  - name: a\n    data_type: numeric(5,2)\n    range: {max: 1e3}\n",
            "x.yaml:3: column a: range bound \"1e3\" is not a value of type numeric(5,2)"
        ),
        (
            "table: t\ncolumns:\n  - name: a\n    data_type: text\nchecks:\n  - when: {column: b, is_null: true}\n    require: {column: a, is_null: true}\n",
            "x.yaml:6: a check: when: no column named \"b\""
        ),
        (
            "table: t\ncolumns:\n  - name: a\n    data_type: text\n    range: {min: 1}\n",
            "x.yaml:5: column a: range applies to numbers, dates and timestamps, not text"
        ),
    ]

    @Test(arguments: cases)
    func eachProblemNamesFileLineAndColumn(yaml: String, message: String) throws {
        let path = "/tmp/hostile-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        mkdir(path, 0o700)
        defer { rmdir(path) }
        let file = "\(path)/x.yaml"
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        try Array(yaml.utf8).withUnsafeBytes { try writeAll(fd, $0) }
        close(fd)
        defer { unlink(file) }
        #expect(throws: ContractError.self) { try Contract.load(path: file) }
        do {
            _ = try Contract.load(path: file)
        } catch {
            #expect(error.description == "\(path)/\(message)")
        }
    }

    @Test func aMissingFileIsNamed() {
        do {
            _ = try Contract.load(path: "/nonexistent/orders.yaml")
            Issue.record("loaded a missing file")
        } catch {
            #expect(error.description.hasPrefix("/nonexistent/orders.yaml: cannot read the contract: "))
            #expect(error.line == nil)
        }
    }
}
