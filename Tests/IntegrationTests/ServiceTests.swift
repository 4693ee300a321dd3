import Foundation
import Ingest
import Postgres
import TestSupport
import Testing

/// Running the job for weeks (issue 15): reject threshold and quarantine, faithful dead letters
/// and their re-sending, one list of event types, start-up against an unreachable server.
@Suite(.serialized) struct ServiceTests {
    /// `rows` purchases that pass every rule, and `bad` with a negative price.
    static func csv(valid: Int, bad: Int, ids: inout [String]) -> String {
        var text = EventField.csvHeader + "\n"
        for i in 0..<(valid + bad) {
            let id = UUID().uuidString.lowercased()
            if i < valid { ids.append(id) }
            text += "\(id),\(i + 1),7,purchase,\(i < valid ? "12.50" : "-3"),2024-01-30T10:15:23.123Z\n"
        }
        return text
    }

    @Test func aFileOverTheRejectThresholdIsQuarantinedWholeAndLoadsOnceFixed() throws {
        try TestDatabase.with { db in
            let p = try HostilePipeline(db)
            let quarantine = p.root.appendingPathComponent("quarantine")
            let threshold = ["--max-reject-rate", "0.5", "--quarantine", quarantine.path]
            var goodIDs: [String] = []
            var mostlyBadIDs: [String] = []
            try p.write("good.csv", Self.csv(valid: 8, bad: 2, ids: &goodIDs))
            try p.write("garbage.csv", Self.csv(valid: 2, bad: 8, ids: &mostlyBadIDs))

            let first = try p.run(p.incoming.path, loadArguments: threshold)
            #expect(first.status == 0, "\(first.stderr)")
            // The good file loads as usual; the garbage one commits none of its rows, no dead letters.
            #expect(try p.events() == 8)
            #expect(try p.badRecords("good.csv") == 2)
            #expect(try p.badRecords("garbage.csv") == 0)
            #expect(!FileManager.default.fileExists(atPath: p.bad.appendingPathComponent("garbage.csv.ndjson").path))
            #expect(try db.scalar("SELECT status FROM ingest_checkpoints WHERE source_file = 'garbage.csv'") == "quarantined")
            #expect(try db.scalar("SELECT status FROM ingest_checkpoints WHERE source_file = 'good.csv'") == "committed")
            #expect(
                first.stderr.contains("garbage.csv: quarantined: 8 of 10 rows rejected (80.0%), over --max-reject-rate 0.5"),
                "\(first.stderr)")
            #expect(!FileManager.default.fileExists(atPath: p.incoming.appendingPathComponent("garbage.csv").path))
            #expect(FileManager.default.fileExists(atPath: quarantine.appendingPathComponent("garbage.csv").path))
            let reasonData = try Data(contentsOf: quarantine.appendingPathComponent("garbage.csv.reason.json"))
            let reason = try JSONSerialization.jsonObject(with: reasonData) as? [String: String] ?? [:]
            #expect(reason["file"] == "garbage.csv")
            #expect(reason["reason"] == "too many rejects")
            #expect(reason["detail"] == "8 of 10 rows rejected (80.0%), over --max-reject-rate 0.5")
            #expect(reason["at"].flatMap { UTCTimestamp(parsing: $0) } != nil)

            // The same bytes put back are not loaded by accident: skipped, back to quarantine.
            try FileManager.default.copyItem(
                at: quarantine.appendingPathComponent("garbage.csv"),
                to: p.incoming.appendingPathComponent("garbage.csv"))
            let again = try p.run(p.incoming.path, loadArguments: threshold)
            #expect(again.status == 0, "\(again.stderr)")
            #expect(again.stderr.contains("garbage.csv: already quarantined, skipped"), "\(again.stderr)")
            #expect(try p.events() == 8)
            #expect(FileManager.default.fileExists(atPath: quarantine.appendingPathComponent("garbage.csv.1").path))
            let again1 = try String(contentsOf: quarantine.appendingPathComponent("garbage.csv.1.reason.json"), encoding: .utf8)
            #expect(again1.contains(#""reason":"already quarantined""#), "\(again1)")

            // Moved back unchanged (not copied): refused again under its own name, and its reason
            // file keeps why it was refused first, the later event appended.
            try FileManager.default.moveItem(
                at: quarantine.appendingPathComponent("garbage.csv"), to: p.incoming.appendingPathComponent("garbage.csv"))
            let moved = try p.run(p.incoming.path, loadArguments: threshold)
            #expect(moved.status == 0, "\(moved.stderr)")
            let history = try String(contentsOf: quarantine.appendingPathComponent("garbage.csv.reason.json"), encoding: .utf8)
            let events = history.split(separator: "\n").map(String.init)
            #expect(events.count == 2, "\(history)")
            #expect(events.first.map { Data($0.utf8) + Data([0x0A]) } == reasonData, "the first reason is kept as it was")
            #expect(events.last?.contains(#""reason":"already quarantined""#) == true, "\(history)")

            // Fixed (the bad prices corrected) and put back: it loads.
            let fixed = try String(contentsOf: quarantine.appendingPathComponent("garbage.csv"), encoding: .utf8)
                .replacingOccurrences(of: ",-3,", with: ",3.00,")
            try p.write("garbage.csv", fixed)
            let third = try p.run(p.incoming.path, loadArguments: threshold)
            #expect(third.status == 0, "\(third.stderr)")
            #expect(try p.events() == 18)
            #expect(
                try count(
                    db,
                    "SELECT count(*) FROM ingest_checkpoints WHERE source_file = 'garbage.csv' AND status = 'committed' AND rows_loaded = 10"
                ) == 1)
            #expect(FileManager.default.fileExists(atPath: p.processed.appendingPathComponent("garbage.csv").path))
        }
    }

    @Test func maxRejectsCountsRowsAndTheStreamGoesOn() throws {
        try TestDatabase.with { db in
            let p = try HostilePipeline(db)
            let quarantine = p.root.appendingPathComponent("q")
            var ids: [String] = []
            try p.write("a.csv", Self.csv(valid: 20, bad: 3, ids: &ids))
            try p.write("b.csv", Self.csv(valid: 20, bad: 2, ids: &ids))
            try p.write("c.csv", Self.csv(valid: 5, bad: 0, ids: &ids))
            let result = try p.run(p.incoming.path, loadArguments: ["--max-rejects", "2", "--quarantine", quarantine.path])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try p.events() == 25)
            #expect(
                try db.scalar("SELECT string_agg(source_file || ':' || status, ',' ORDER BY source_file) FROM ingest_checkpoints")
                    == "a.csv:quarantined,b.csv:committed,c.csv:committed")
            let reason = try String(contentsOf: quarantine.appendingPathComponent("a.csv.reason.json"), encoding: .utf8)
            #expect(reason.contains(#""detail":"3 of 23 rows rejected, over --max-rejects 2""#), "\(reason)")
            let bad = try runTool(Executables.url("load"), ["--max-reject-rate", "1.5"])
            #expect(bad.status == 64)
        }
    }

    /// Invalid UTF-8 keeps its bytes (raw_base64), a NUL keeps its `\u0000`, every reason has its
    /// value, and the table's raw column is the NDJSON line byte for byte.
    @Test func deadLettersKeepTheOriginalBytesAndAgreeWithTheTable() throws {
        try TestDatabase.with { db in
            let p = try HostilePipeline(db)
            let loadedID = UUID().uuidString.lowercased()
            try p.write("first.csv", EventField.csvHeader + "\n\(loadedID),1,7,view,,2024-01-30T10:15:23Z\n")
            #expect(try p.run(p.incoming.appendingPathComponent("first.csv").path).status == 0)

            var bytes = Data((EventField.csvHeader + "\n").utf8)
            let invalidRow =
                Data("\(UUID().uuidString.lowercased()),2,7,vi".utf8) + Data([0xFF, 0xFE]) + Data("ew,,2024-01-30T10:15:23Z".utf8)
            bytes += invalidRow + Data("\n".utf8)
            bytes += Data("\(UUID().uuidString.lowercased()),3\u{0}4,7,view,,2024-01-30T10:15:23Z\n".utf8)
            bytes += Data("\(loadedID),4,7,view,,2024-01-30T10:15:23Z\n".utf8)
            try p.write("second.csv", bytes)
            let result = try p.run(p.incoming.appendingPathComponent("second.csv").path)
            #expect(result.status == 0, "\(result.stderr)")

            let ndjson = try Data(contentsOf: p.bad.appendingPathComponent("second.csv.ndjson"))
            let letters = ndjson.split(separator: 0x0A).map { Data($0) }
            #expect(letters.count == 3)
            let objects = try letters.map { try JSONSerialization.jsonObject(with: $0) as? [String: Any] ?? [:] }
            let byLine = Dictionary(uniqueKeysWithValues: objects.map { (($0["line"] as? Int) ?? 0, $0) })
            // Line 2: the row's exact bytes, from raw_base64; the reason has the value as text.
            let utf8Row = try #require(byLine[2])
            #expect(Data(base64Encoded: utf8Row["raw_base64"] as? String ?? "") == invalidRow)
            let utf8Reason = (utf8Row["reasons"] as? [[String: Any]])?.first
            #expect(utf8Reason?["field"] as? String == "event_type")
            #expect(utf8Reason?["value"] as? String == "vi\u{FFFD}\u{FFFD}ew")
            // Line 3: the NUL as \u0000, in the file and in the table alike.
            let nulReason = (byLine[3]?["reasons"] as? [[String: Any]])?.first
            #expect(nulReason?["value"] as? String == "3\u{0}4")
            #expect(
                String(decoding: letters.first { $0.range(of: Data(#""line":3"#.utf8)) != nil } ?? Data(), as: UTF8.self)
                    .contains(#"\u0000"#))
            // Line 4: already loaded, with the offending id.
            let duplicate = (byLine[4]?["reasons"] as? [[String: Any]])?.first
            #expect(duplicate?["reason"] as? String == "duplicate event_id (already in the table)")
            #expect(duplicate?["value"] as? String == loadedID)

            let table = try db.query("SELECT raw FROM ecommerce_bad_records WHERE source_file = 'second.csv' ORDER BY line_number")
                .map { Data(($0[0] ?? "").utf8) }
            #expect(
                table
                    == letters.sorted { a, b in
                        let la = (try? JSONSerialization.jsonObject(with: a) as? [String: Any])?["line"] as? Int ?? 0
                        let lb = (try? JSONSerialization.jsonObject(with: b) as? [String: Any])?["line"] as? Int ?? 0
                        return la < lb
                    })
        }
    }

    /// The README's procedure: fix dead letters with jq, send them through validate | load; a
    /// second send adds nothing.
    @Test func fixedDeadLettersResentLoadOnceAndOnlyOnce() throws {
        try TestDatabase.with { db in
            let p = try HostilePipeline(db)
            var ids: [String] = []
            try p.write("prices.csv", Self.csv(valid: 3, bad: 4, ids: &ids))
            #expect(try p.run(p.incoming.path).status == 0)
            #expect(try p.events() == 3)
            var env = ProcessInfo.processInfo.environment
            env["PGDATABASE"] = db.name
            env["PATH"] = Executables.directory.path + ":" + (env["PATH"] ?? "/usr/bin:/bin")
            let resend = """
                set -euo pipefail
                jq -c 'select(all(.reasons[]; .field == "price"))
                       | .price = (if .event_type == "purchase" then "3.00" else "" end)
                       | del(.kind, .reasons, .file, .line)' "$BAD/prices.csv.ndjson" \
                  | validate | load --bad-records "$BAD"
                """
            env["BAD"] = p.bad.path
            for round in 1...2 {
                let result = try runTool(
                    URL(fileURLWithPath: "/bin/bash"), ["-c", resend], environment: env,
                    currentDirectory: p.root, timeout: 60)
                #expect(result.status == 0, "round \(round): \(result.stderr)")
                #expect(try p.events() == 7, "round \(round)")
            }
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events WHERE price = 3.00") == 4)
        }
    }

    /// The table has no list of its own: a type validate is told to accept loads.
    @Test func eventTypesAcceptedByValidateLoad() throws {
        try TestDatabase.with { db in
            let p = try HostilePipeline(db)
            let id = UUID().uuidString.lowercased()
            let line =
                #"{"event_id":"\#(id)","user_id":"1","product_id":"2","event_type":"add_to_cart","price":"","event_timestamp":"2024-01-30 10:15:23"}"#
            var env = ProcessInfo.processInfo.environment
            env["PGDATABASE"] = db.name
            env["V"] = Executables.url("validate").path
            env["L"] = Executables.url("load").path
            let result = try runTool(
                URL(fileURLWithPath: "/bin/bash"),
                ["-c", #"set -o pipefail; "$V" --event-types view,purchase,add_to_cart | "$L" --bad-records "$1""#, "-", p.bad.path],
                stdin: Data((line + "\n").utf8), environment: env, currentDirectory: p.root)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try db.scalar("SELECT event_type FROM ecommerce_events WHERE event_id = $1", [id]) == "add_to_cart")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_bad_records") == 0)
        }
    }

    @Test func genStdoutDoesNotPauseByDefault() throws {
        let started = Date()
        let result = try runTool(Executables.url("gen"), ["--stdout", "--files", "4", "--rows-per-file", "5", "--seed", "1"], timeout: 60)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.lines.count == 20)
        // The old default paused 5 s between files (15 s here); a generous bound for a busy machine.
        #expect(Date().timeIntervalSince(started) < 10)
    }

    /// The README's direct example with nothing configured: load finds the embedded server in
    /// ./.pgdata as the scripts do (here a link to bin/test's own cluster).
    @Test func loadWithNothingConfiguredUsesTheEmbeddedServer() throws {
        try TestDatabase.with { db in
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("embedded-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let cluster = try #require(ProcessInfo.processInfo.environment["INGEST_PGDATA"], "bin/test sets INGEST_PGDATA")
            try FileManager.default.createSymbolicLink(atPath: dir.appendingPathComponent(".pgdata").path, withDestinationPath: cluster)
            var env = ProcessInfo.processInfo.environment.filter {
                !$0.key.hasPrefix("PG") && !$0.key.hasPrefix("POSTGRES_") && !$0.key.hasPrefix("INGEST_")
            }
            env["INGEST_DATABASE"] = db.name
            env["V"] = Executables.url("validate").path
            env["L"] = Executables.url("load").path
            let id = UUID().uuidString.lowercased()
            let script = """
                set -o pipefail
                jq -nc '{event_id: "\(id)", user_id: "42", product_id: "7",
                         event_type: "purchase", price: "12.50", event_timestamp: "2024-01-30 10:15:23"}' \\
                  | "$V" | "$L"
                """
            let result = try runTool(
                URL(fileURLWithPath: "/bin/bash"), ["-c", script], environment: env, currentDirectory: dir, timeout: 60)
            #expect(result.status == 0, "\(result.stderr)")
            let port = try String(contentsOfFile: cluster + "/port", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(result.stderr.contains("nothing configured: the embedded server (bin/pg) on port \(port)"), "\(result.stderr)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events WHERE event_id = $1", [id]) == 1)
        }
    }

    /// load pointed at a port nobody listens on by a leftover .env, with the embedded server
    /// elsewhere: it says where and why it waits, with both hints; one SIGINT ends the wait (130).
    @Test func loadExplainsAnUnreachableServerAndStopsAtOnce() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("unreachable-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent(".pgdata"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let port = try ClosedPort()
        try "POSTGRES_HOST=127.0.0.1\nPOSTGRES_PORT=\(port.number)\nPOSTGRES_DB=ecommerce\n".write(
            to: dir.appendingPathComponent(".env"), atomically: true, encoding: .utf8)
        try "6543\n".write(to: dir.appendingPathComponent(".pgdata/port"), atomically: true, encoding: .utf8)
        let env = ProcessInfo.processInfo.environment.filter {
            !$0.key.hasPrefix("PG") && !$0.key.hasPrefix("POSTGRES_") && !$0.key.hasPrefix("INGEST_")
        }
        let log = dir.appendingPathComponent("load.stderr").path
        let script = "cd \(shellQuoted(dir.path)) && exec \(shellQuoted(Executables.url("load").path))"
        let load = try SpawnedProcess(["/bin/bash", "-c", script], environment: env, stderr: log)
        defer { if load.isRunning { load.signal(SIGKILL); load.wait(timeout: 5) } }
        let text = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        #expect(eventually(timeout: 30) { text().contains("hint:") }, "\(text())")
        let stderr = text()
        #expect(stderr.contains("connecting to host=127.0.0.1 port=\(port.number)"), "\(stderr)")
        #expect(stderr.contains(".env found and used (.env: POSTGRES_DB, POSTGRES_HOST, POSTGRES_PORT)"), "\(stderr)")
        #expect(stderr.contains("retrying in"), "\(stderr)")
        #expect(stderr.contains(#"the embedded server (.pgdata) is on port 6543: eval "$(bin/pg env)""#), "\(stderr)")
        #expect(stderr.contains(".env names this server"), "\(stderr)")
        load.signal(SIGINT)
        #expect(load.wait(timeout: 10), "load still waiting 10 s after one SIGINT")
        #expect(load.exitCode == 130)
        #expect(text().contains("interrupted while waiting for"), "\(text())")
    }
}

/// A TCP port on 127.0.0.1 that is bound but not listening: connecting is refused, and no other
/// process can take it while this value lives.
final class ClosedPort {
    let fd: Int32
    let number: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw TestDatabaseError("cannot bind a port on 127.0.0.1: errno \(errno)") }
        number = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }
}
