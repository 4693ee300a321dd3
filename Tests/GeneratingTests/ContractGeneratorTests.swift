import Testing
import Validating

@testable import Generating
@testable import Ingest

#if canImport(Glibc)
import Glibc
#endif

/// The package's root, for the example contracts.
private let packageRoot: String = {
    var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)  // Tests/GeneratingTests/ContractGeneratorTests.swift
    return parts.joined(separator: "/")
}()

private func example(_ name: String) throws -> Contract {
    try Contract.load(path: "\(packageRoot)/contracts/examples/\(name).yaml")
}

/// Each row through `validate`'s stage, as `gen --stdout --contract | validate --contract` runs.
private func validated(_ rows: [ContractRow], _ contract: Contract, now: UTCTimestamp) -> [(ContractRow, [RejectReason]?)] {
    var stage = StreamValidator(rules: ValidationRules(contract: contract), clock: { now })
    var decoder = LineDecoder()
    var result: [(ContractRow, [RejectReason]?)] = []
    for row in rows {
        var lines: [UInt8] = []
        ContractRecords.appendRecords([row], contract: contract, into: &lines)
        var out: [UInt8] = []
        lines.dropLast().withUnsafeBytes { _ = stage.process(UnsafeRawBufferPointer($0), inputLine: 1, into: &out) }
        let reasons: [RejectReason]? = out.dropLast().withUnsafeBytes { raw in
            let line = try! decoder.decode(UnsafeRawBufferPointer(raw))
            return line.kind == .reject ? line.reasons() : nil
        }
        result.append((row, reasons))
    }
    return result
}

@Suite struct ContractGeneratorTests {
    let now = UTCTimestamp(parsing: "2024-01-30T10:15:23.123Z")!

    @Test(arguments: ["shipments", "support_tickets", "sensor_readings"])
    func validRowsPassAndInvalidRowsGetTheManifestReason(name: String) throws {
        let contract = try example(name)
        var g = try ContractRowGenerator(contract: contract, seed: 5, invalidRate: 0.5, now: now)
        var broken = Set<String>()
        for _ in 0..<30 {
            for (row, reasons) in validated(g.batch(rows: 50), contract, now: now) {
                if let rule = row.broken {
                    broken.insert(rule.rule)
                    #expect(reasons?.count == 1, "\(rule.rule): \(row.cells) → \(reasons ?? [])")
                    #expect(reasons?.first?.field == rule.field, "\(rule.rule): \(row.cells)")
                    #expect(reasons?.first?.reason == rule.reason, "\(rule.rule): \(row.cells)")
                } else {
                    #expect(reasons == nil, "\(row.cells) → \(reasons ?? [])")
                }
            }
        }
        // Every rule the contract declares is broken somewhere in 1,500 rows at this rate.
        #expect(broken == Set(g.ruleNames), "never broken: \(Set(g.ruleNames).subtracting(broken).sorted())")
    }

    @Test func brokenRulesCoverEveryKindOfRule() throws {
        let g = try ContractRowGenerator(contract: try example("shipments"), seed: 1, now: now)
        let names = Set(g.ruleNames)
        for expected in [
            "warehouse.range_min", "warehouse.range_max", "order_number.range_min", "order_number.type_range",
            "declared_value.scale", "recipient.length_min", "recipient.length_max", "carrier.accepted_values",
            "country_code.pattern", "insured.data_type", "delivered_at.max_future", "check.delivered_needs_packed",
            "shipment_id.not_null", "duplicate_key", "field_count",
        ] {
            #expect(names.contains(expected), "\(expected) missing from \(names.sorted())")
        }
    }

    @Test func nullableCellsGetEachNullToken() throws {
        let contract = try example("sensor_readings")
        var g = try ContractRowGenerator(contract: contract, seed: 3, invalidRate: 0, now: now)
        let rows = (0..<20).flatMap { _ in g.batch(rows: 50) }
        let humidity = contract.column(named: "humidity_pct")!
        let tokens = Set(rows.map { $0.cells[humidity] }).intersection(["", "NA", "\\N"])
        #expect(tokens == ["", "NA", "\\N"])
        let share = Double(rows.filter { ["", "NA", "\\N"].contains($0.cells[humidity]) }.count) / Double(rows.count)
        #expect(share > 0.05 && share < 0.15)
        // The key (sensor_id, read_at) never repeats among valid rows.
        let keys = rows.compactMap(\.key)
        #expect(Set(keys.map { $0.joined(separator: "|") }).count == keys.count)
    }

    @Test func sameSeedSameRows() throws {
        let contract = try example("shipments")
        var a = try ContractRowGenerator(contract: contract, seed: 8, invalidRate: 0.3, now: now)
        var b = try ContractRowGenerator(contract: contract, seed: 8, invalidRate: 0.3, now: now)
        #expect(a.batch(rows: 100).map(\.cells) == b.batch(rows: 100).map(\.cells))
    }

    /// The CSV is read back by the reader `watch` uses: quotes, commas and line breaks survive,
    /// the header is the contract's source names, and the manifest's lines are where rows start.
    @Test func csvRoundTripsThroughTheReader() throws {
        let contract = try example("support_tickets")
        var g = try ContractRowGenerator(contract: contract, seed: 2, invalidRate: 0, now: now)
        let rows = g.batch(rows: 200)
        #expect(rows.contains { $0.cells.contains { $0.contains("\n") } })
        #expect(rows.contains { $0.cells.contains { $0.contains("\"") } })
        let path = "/tmp/contract-gen-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).csv"
        let bytes = ContractRecords.csv(rows, contract: contract)
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        defer {
            close(fd)
            unlink(path)
        }
        try bytes.withUnsafeBytes { try writeAll(fd, $0) }
        lseek(fd, 0, SEEK_SET)
        let reader = CSVReader(fd: fd)
        let header = try #require(try reader.nextRow())
        #expect(
            (0..<header.fieldCount).map { reader.fieldString($0) } == ["Ticket ID", "Subject", "Body", "Status", "Resolution", "Opened At"])
        for (row, line) in zip(rows, ContractRecords.startLines(rows)) {
            let read = try #require(try reader.nextRow())
            #expect(read.line == line)
            #expect((0..<read.fieldCount).map { reader.fieldString($0) } == row.cells)
        }
        #expect(try reader.nextRow()?.line == nil)
    }

    @Test func manifestNamesRuleFieldAndReason() throws {
        let contract = try example("sensor_readings")
        let rows = [
            ContractRow(cells: ["1", "a\nb"], broken: nil, key: ["1", "30/01/2024 10:00:00"]),
            ContractRow(
                cells: ["x"], broken: BrokenRule(rule: "sensor_id.data_type", field: "sensor_id", reason: "not an integer"), key: nil),
        ]
        var out: [UInt8] = []
        ContractRecords.appendManifestLine(file: "batch_x.csv", rows: rows, contract: contract, into: &out)
        #expect(
            String(decoding: out, as: UTF8.self) == """
                {"file":"batch_x.csv","table":"public.sensor_readings","rows":2,"valid":1,"invalid":1,"valid_keys":[["1","30/01/2024 10:00:00"]],"invalid_lines":[{"line":4,"rule":"sensor_id.data_type","field":"sensor_id","reason":"not an integer"}]}

                """)
    }

    /// A pattern beyond the sampler: plain text is drawn and kept where it matches, with a note;
    /// when plain text never matches, the contract is refused naming the column and pattern.
    @Test func aPatternOutsideTheSamplersReachIsFilteredOrRefused() throws {
        let filtered = try Contract.parse(
            """
            table: codes
            columns:
              - name: code
                data_type: text
                pattern: "[^x]+"
            """, path: "codes.yaml")
        var g = try ContractRowGenerator(contract: filtered, seed: 1, invalidRate: 0.5, now: now)
        #expect(
            g.notes == [
                "column code: gen cannot draw text for pattern [^x]+ (negated bracket lists ([^…])): plain text is drawn and kept where it matches; no row breaks this pattern on purpose"
            ])
        #expect(!g.ruleNames.contains("code.pattern"))
        let rows = g.batch(rows: 100)
        #expect(rows.filter { $0.broken == nil }.allSatisfy { !$0.cells[0].contains("x") })
        let refused = try Contract.parse(
            """
            table: codes
            columns:
              - name: code
                data_type: text
                constraints: [not_null]
                pattern: "[[:punct:]]{6}"
            """, path: "codes.yaml")
        do {
            _ = try ContractRowGenerator(contract: refused, seed: 1, now: now)
            Issue.record("a contract no drawn row satisfies was accepted")
        } catch {
            #expect(
                error.description.hasPrefix(
                    "codes.yaml: gen found no row this contract accepts in 50 tries: column code: gen cannot draw text for pattern [[:punct:]]{6}"
                ), "\(error.description)")
        }
    }

    @Test(arguments: ["[A-Z]{2}", "TCK-[0-9]{6}", "(ab|cd)+x?", "[[:digit:]]{3}\\.[a-f]*", "[a-z_][a-z0-9_]{0,8}"])
    func patternSamplesMatch(pattern: String) throws {
        let sampler = try PatternSampler(pattern)
        let regex = try #require(RegularExpression(pattern))
        var random = SplitMix64(seed: 4)
        for _ in 0..<200 {
            var text = sampler.draw(&random)
            #expect(text.withUTF8 { regex.matches(UnsafeRawBufferPointer($0)) }, "\(pattern): \(text)")
        }
    }
}
