import Foundation
import Ingest
import Postgres
import TestSupport
import Testing

/// Each example contract loaded by the real pipeline, `watch --once | validate | load`, and the
/// table compared with what PostgreSQL itself makes of the same CSV: `psql \copy` of the files
/// into a staging table of text columns, the valid rows (the generator's manifest names them by
/// key) cast by the server into a reference table. `EXCEPT` both ways must be empty.
@Suite(.serialized) struct ContractPipelineTests {
    static let examples = ["shipments", "support_tickets", "sensor_readings"]

    @Test(arguments: examples) func thePipelineLoadsWhatPostgresMakesOfTheValidRows(_ name: String) throws {
        let contractPath = Self.root + "/contracts/examples/\(name).yaml"
        let contract = try Contract.load(path: contractPath)
        try TestDatabase.with { db in
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("contract-pipeline-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: folder) }
            let incoming = folder.appendingPathComponent("incoming")
            for sub in ["incoming", "bad", "processed", "quarantine"] {
                try FileManager.default.createDirectory(at: folder.appendingPathComponent(sub), withIntermediateDirectories: true)
            }
            try db.connect().executeScript(Self.tables(contract))
            // Two sets: every row valid (PostgreSQL's COPY must read the whole file, and a row
            // with a wrong field count stops it), and one with 5 % of rows each breaking a rule.
            func generate(_ set: String, seed: Int, invalidRate: String, files: Int) throws -> [[String: Any]] {
                let out = folder.appendingPathComponent(set)
                let manifest = folder.appendingPathComponent("\(set).ndjson").path
                let gen = try runTool(
                    Executables.url("gen"),
                    [
                        "--contract", contractPath, "--out", out.path, "--files", String(files), "--rows-per-file", "700",
                        "--interval", "0", "--invalid-rate", invalidRate, "--seed", String(seed), "--manifest", manifest,
                    ])
                #expect(gen.status == 0, "\(gen.stderr)")
                for csv in try FileManager.default.contentsOfDirectory(atPath: out.path) where csv.hasSuffix(".csv") {
                    if set == "valid" {
                        let copy = try runTool(
                            URL(fileURLWithPath: "/usr/bin/psql"),
                            [
                                db.conninfo, "-v", "ON_ERROR_STOP=1", "-c",
                                "\\copy staging FROM '\(out.path)/\(csv)' WITH (FORMAT csv, HEADER)",
                            ])
                        #expect(copy.status == 0, "\(copy.stderr)")
                    }
                    try FileManager.default.copyItem(
                        at: out.appendingPathComponent(csv), to: incoming.appendingPathComponent("\(set)_\(csv)"))
                }
                return try String(contentsOfFile: manifest, encoding: .utf8).split(separator: "\n").map {
                    try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] ?? [:]
                }
            }
            let valid = try generate("valid", seed: 21, invalidRate: "0", files: 2)
            let mixed = try generate("mixed", seed: 22, invalidRate: "0.05", files: 1)
            // A one-column key is listed as its value, a longer one as an array of values.
            func keys(_ entries: [[String: Any]]) -> [[String]] {
                entries.flatMap { ($0["valid_keys"] as? [Any] ?? []).map { ($0 as? [Any] ?? [$0]).map { "\($0)" } } }
            }
            // Two gen runs draw random keys (a pattern's) independently: a key both drew loads once,
            // from the mixed file (its name sorts first), and the valid file's row is a duplicate.
            let mixedKeys = Set(keys(mixed))
            let overlap = keys(valid).filter { mixedKeys.contains($0) }.count
            let validKeys = keys(valid).filter { !mixedKeys.contains($0) }
            #expect(validKeys.count + overlap == 1400)
            try db.connect().executeScript(Self.reference(contract, validKeys: validKeys))
            #expect(try count(db, "SELECT count(*) FROM reference") == validKeys.count)
            let mixedValid = mixed.reduce(0) { $0 + ($1["valid"] as? Int ?? 0) }
            let rejected = mixed.reduce(0) { $0 + ($1["invalid"] as? Int ?? 0) } + overlap
            #expect(rejected > overlap)

            let script =
                #""$W" --once --contract "$C" "$IN" | "$V" --contract "$C" | "$L" --contract "$C" --db "$DB" --incoming "$IN" --bad-records "$F/bad" --archive "$F/processed" --quarantine "$F/quarantine""#
            var env = ProcessInfo.processInfo.environment
            env["W"] = Executables.url("watch").path
            env["V"] = Executables.url("validate").path
            env["L"] = Executables.url("load").path
            env["C"] = contractPath
            env["IN"] = incoming.path
            env["F"] = folder.path
            env["DB"] = db.conninfo
            let run = try runTool(URL(fileURLWithPath: "/bin/bash"), ["-c", "set -o pipefail; " + script], environment: env, timeout: 120)
            #expect(run.status == 0, "\(run.stderr)")
            let table = contract.table.description
            let loaded = try count(db, "SELECT count(*) FROM \(table)")
            #expect(loaded == validKeys.count + mixedValid, "\(run.stderr)")
            let keys = contract.key.map { Self.quoted(contract.columns[$0].name) }.joined(separator: ", ")
            #expect(
                try count(
                    db,
                    "SELECT count(*) FROM (SELECT * FROM \(table) WHERE (\(keys)) IN (SELECT \(keys) FROM reference) EXCEPT ALL SELECT * FROM reference) d"
                ) == 0)
            #expect(try count(db, "SELECT count(*) FROM (SELECT * FROM reference EXCEPT ALL SELECT * FROM \(table)) d") == 0)
            #expect(try count(db, "SELECT count(*) FROM \(contract.deadLetterTable)") == rejected)
        }
    }

    static var root: String {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }

    static func quoted(_ name: String) -> String { "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }
    static func literal(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "''") + "'" }

    /// The contract's table (its declared types, NOT NULL, key), its dead-letter table, a
    /// reference table like it and a staging table of text columns in the CSV's order.
    static func tables(_ contract: Contract) -> String {
        let columns = contract.columns.map { "\(quoted($0.name)) \($0.type)\($0.notNull ? " NOT NULL" : "")" }
        let key =
            contract.key.isEmpty ? "" : ", PRIMARY KEY (\(contract.key.map { quoted(contract.columns[$0].name) }.joined(separator: ", ")))"
        return """
            CREATE TABLE \(contract.table) (\(columns.joined(separator: ", "))\(key));
            CREATE TABLE \(contract.deadLetterTable) (LIKE public.ecommerce_bad_records INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
            GRANT SELECT, INSERT ON \(contract.table), \(contract.deadLetterTable) TO ingest_loader;
            CREATE TABLE reference (LIKE \(contract.table));
            CREATE TABLE staging (\(contract.columns.map { "\(quoted($0.source)) text" }.joined(separator: ", ")));
            """
    }

    /// Fills `reference` from `staging`: the rows whose key is among the valid ones, each value
    /// cast by the server (NULL tokens, trimming, time zones and formats as the contract says).
    static func reference(_ contract: Contract, validKeys: [[String]]) -> String {
        let keyColumns = contract.key.map { quoted(contract.columns[$0].source) }
        let keyTuples = validKeys.map { "(" + $0.map(literal).joined(separator: ", ") + ")" }.joined(separator: ", ")
        let values = contract.columns.map(cast).joined(separator: ", ")
        return """
            SET TimeZone = 'UTC';
            INSERT INTO reference SELECT \(values) FROM staging WHERE (\(keyColumns.joined(separator: ", "))) IN (\(keyTuples));
            """
    }

    /// The server's reading of one cell, as the contract declares it.
    static func cast(_ column: ContractColumn) -> String {
        let raw = "coalesce(\(quoted(column.source)), '')"  // COPY's CSV reads an empty cell as NULL
        let v = column.trim ? "btrim(\(raw), E' \\t')" : raw
        let tokens = column.nullValues.map(literal).joined(separator: ", ")
        let offset = "interval '\(column.rules.utcOffsetSeconds) seconds'"
        let value: String
        switch column.type {
        case .timestamptz, .timestamp:
            let zoned = column.type == .timestamptz
            if case .pattern(let p) = column.rules.formats.first {
                let format = p.replacingOccurrences(of: "%Y", with: "YYYY").replacingOccurrences(of: "%m", with: "MM")
                    .replacingOccurrences(of: "%d", with: "DD").replacingOccurrences(of: "%H", with: "HH24")
                    .replacingOccurrences(of: "%M", with: "MI").replacingOccurrences(of: "%S", with: "SS")
                    .replacingOccurrences(of: "%f", with: "US").replacingOccurrences(of: "%z", with: "TZH:TZM")
                let parsed = "to_timestamp(\(v), \(literal(format)))"
                value = p.contains("%z") ? parsed : "(\(parsed) - \(offset))"
            } else {
                let hasOffset = "\(v) ~ '([Zz]|[+-][0-9][0-9](:?[0-9][0-9])?)$'"
                let local = zoned ? "((\(v))::timestamp - \(offset)) AT TIME ZONE 'UTC'" : "(\(v))::timestamp"
                value = "CASE WHEN \(hasOffset) THEN (\(v))::timestamptz\(zoned ? "" : " AT TIME ZONE 'UTC' + \(offset)") ELSE \(local) END"
            }
        default:
            if let accepted = column.rules.acceptedValues, !column.rules.caseSensitive {
                value =
                    "(SELECT a FROM unnest(ARRAY[\(accepted.map(literal).joined(separator: ", "))]) a WHERE lower(a) = lower(\(v)))::\(column.type)"
            } else {
                value = "(\(v))::\(column.type)"
            }
        }
        return "CASE WHEN \(v) = ANY(ARRAY[\(tokens)]::text[]) THEN NULL ELSE \(value) END"
    }
}
