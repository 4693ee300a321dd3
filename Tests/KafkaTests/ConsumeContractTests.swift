import Foundation
import TestSupport
import Testing

/// `consume --contract`: message keys are the contract's `source` names, records carry the
/// column names, and `validate --contract` accepts what `consume` writes.
@Suite(.serialized) struct ConsumeContractTests {
    @Test func messageKeysAreMappedThroughTheContract() throws {
        try TestDatabase.with { database in
            let kafka = try MockKafka()
            defer { kafka.stop() }
            let contract = TestDatabase.packageRoot.appendingPathComponent("contracts/examples/support_tickets.yaml").path
            try kafka.produce(
                """
                {"Ticket ID":"TCK-000001","Subject":"Printer on fire","Body":"It said \\"low toner\\",\\nthen smoke.","Status":"Closed","Resolution":"Replaced","Opened At":"2024-01-30T10:15:23Z"}
                {"ticket id":"TCK-000002","SUBJECT":"Hi","Body":"x","Status":"open","Opened At":"2024-01-30T10:16:00Z","note":"kept"}
                {"Ticket ID":"TCK-000003","Subject":"No resolution","Body":"b","Status":"closed","Opened At":"2024-01-30T10:17:00Z"}

                """)
            let consumed = try runTool(
                Executables.url("consume"),
                ["--brokers", kafka.bootstrap, "--topic", "events", "--group", "g-contract", "--exit-at-end", "--db", database.conninfo]
                    + groupSettings + ["--contract", contract],
                timeout: 60)
            #expect(consumed.status == 0, "\(consumed.stderr)")
            let records = try consumed.lines.map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
                .filter { $0["kind"] as? String == "record" }
            #expect(records.count == 3)
            let second = try #require(records.first { $0["ticket_id"] as? String == "TCK-000002" })
            #expect(second["subject"] as? String == "Hi")
            #expect(second["opened_at"] as? String == "2024-01-30T10:16:00Z")
            #expect(second["note"] as? String == "kept")  // not a column's source: passed as received
            #expect(second["Subject"] == nil && second["SUBJECT"] == nil)

            let validated = try runTool(
                Executables.url("validate"), ["--contract", contract, "--summary"],
                stdin: Data((consumed.lines.joined(separator: "\n") + "\n").utf8))
            #expect(validated.status == 0, "\(validated.stderr)")
            #expect(validated.stderr.contains("valid     1"), "\(validated.stderr)")
            #expect(validated.stderr.contains("subject: shorter than 3 characters"), "\(validated.stderr)")
            #expect(validated.stderr.contains("resolution: required for a closed ticket"), "\(validated.stderr)")
            let valid = validated.lines.filter { $0.contains("\"kind\":\"record\"") }
            #expect(
                valid.count == 1 && valid[0].contains(#""status":"closed""#)
                    && valid[0].contains(#""body":"It said \"low toner\",\nthen smoke.""#))
        }
    }

    @Test func aBadContractIsAUsageError() throws {
        let result = try runTool(
            Executables.url("consume"), ["--brokers", "127.0.0.1:1", "--topic", "t", "--group", "g", "--contract", "/nonexistent/c.yaml"])
        #expect(result.status == 64)
        #expect(result.stderr.contains("/nonexistent/c.yaml: cannot read the contract"), "\(result.stderr)")
    }
}
