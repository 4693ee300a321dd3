import Foundation
import TestSupport
import Testing

/// `gen --contract` as a real process: its CSV header is the contract's sources, and
/// `gen --stdout --contract | validate --contract` agrees with the manifest row for row.
@Suite struct GenContractTests {
    static let root = TestDatabase.packageRoot.path

    @Test(arguments: ["shipments", "support_tickets", "sensor_readings"])
    func validateAgreesWithTheManifest(name: String) throws {
        let contract = "\(Self.root)/contracts/examples/\(name).yaml"
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gen-contract-\(name)-\(UInt32.random(in: 0 ... .max))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let manifest = folder.appendingPathComponent("manifest.ndjson").path
        let gen = try runTool(
            Executables.url("gen"),
            [
                "--contract", contract, "--stdout", "--files", "4", "--rows-per-file", "100", "--invalid-rate", "0.3", "--seed", "3",
                "--manifest", manifest,
            ])
        #expect(gen.status == 0, "\(gen.stderr)")
        let validated = try runTool(Executables.url("validate"), ["--contract", contract, "--summary"], stdin: Data(gen.stdout.utf8))
        #expect(validated.status == 0, "\(validated.stderr)")
        var valid = 0
        var reasons: [String: Int] = [:]
        for line in try String(contentsOfFile: manifest, encoding: .utf8).split(separator: "\n") {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            valid += object["valid"] as? Int ?? 0
            for invalid in object["invalid_lines"] as? [[String: Any]] ?? [] {
                let field = invalid["field"] as? String
                let key = (field.map { "\($0): " } ?? "") + (invalid["reason"] as? String ?? "")
                reasons[key, default: 0] += 1
            }
        }
        #expect(valid > 200)
        #expect(validated.stderr.contains("valid     \(valid)\n"), "\(validated.stderr)")
        // Every reason the manifest expects, as often as validate counts it.
        for (reason, count) in reasons {
            let number = String(count)
            #expect(
                validated.stderr.contains(String(repeating: " ", count: max(0, 7 - number.count)) + number + "  " + reason + "\n"),
                "\(reason) × \(count)\n\(validated.stderr)")
        }
    }

    @Test func csvHeaderIsTheSourcesAndABadPatternIsAUsageError() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gen-contract-csv-\(UInt32.random(in: 0 ... .max))")
        defer { try? FileManager.default.removeItem(at: folder) }
        let result = try runTool(
            Executables.url("gen"),
            ["--contract", "\(Self.root)/contracts/examples/support_tickets.yaml", "--out", folder.path, "--files", "1", "--interval", "0"])
        #expect(result.status == 0, "\(result.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".csv") }
        #expect(files.count == 1)
        let text = try String(contentsOfFile: folder.appendingPathComponent(files[0]).path, encoding: .utf8)
        #expect(text.hasPrefix("Ticket ID,Subject,Body,Status,Resolution,Opened At\n"))

        let contract = folder.appendingPathComponent("codes.yaml")
        try "table: codes\ncolumns:\n  - name: code\n    data_type: text\n    constraints: [not_null]\n    pattern: \"[[:punct:]]{6}\"\n"
            .write(
                to: contract, atomically: true, encoding: .utf8)
        let refused = try runTool(Executables.url("gen"), ["--contract", contract.path, "--stdout", "--files", "1"])
        #expect(refused.status == 64)
        #expect(
            refused.stderr.contains(
                "gen found no row this contract accepts in 50 tries: column code: gen cannot draw text for pattern [[:punct:]]{6}"),
            "\(refused.stderr)")
    }
}
