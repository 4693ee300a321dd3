import Foundation
import Ingest
import Postgres
import TestSupport
import Testing

/// Text that would do harm if any tool ever pasted input into SQL.
private let injection = #"x'); DROP TABLE ecommerce_events; -- $$ "quoted" ; \back\slash $tag$"#

/// A JSON string literal for `text`.
private func jsonString(_ text: String) -> String {
    var bytes: [UInt8] = []
    JSONWriter.appendString(text, &bytes)
    return String(decoding: bytes, as: UTF8.self)
}

private func environment(_ changes: [String: String?]) -> [String: String] {
    var env = ProcessInfo.processInfo.environment
    for (key, value) in changes { env[key] = value }
    return env
}

@Suite struct SecurityTests {
    let load = Executables.url("load")
    let validate = Executables.url("validate")

    // MARK: (1) no SQL from input text

    @Test func injectedTextInEveryFieldAndTheFileNameIsStoredVerbatim() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let name = "evil'; DROP TABLE ecommerce_events; -- $$ \\ \"q\".csv"
            let good = (0..<2).map { _ in UUID().uuidString.lowercased() }
            var csv = EventField.csvHeader + "\n"
            for id in good { csv += "\(id),1,2,view,,2024-01-30T10:15:23Z\n" }
            csv += "bad\n"
            let url = f.incoming.appendingPathComponent(name)
            try Data(csv.utf8).write(to: url)
            let digest = try FileDigest.of(path: url.path)
            let file = jsonString(name)
            var lines = good.enumerated().map { i, id in
                #"{"kind":"record","file":\#(file),"line":\#(i + 2),"event_id":"\#(id)","user_id":"1","product_id":"2","event_type":"view","price":"","event_timestamp":"2024-01-30T10:15:23Z"}"#
            }
            let evil = jsonString(injection)
            lines.append(
                #"{"kind":"record","file":\#(file),"line":4,"event_id":\#(evil),"user_id":\#(evil),"product_id":\#(evil),"event_type":\#(evil),"price":\#(evil),"event_timestamp":\#(evil)}"#
            )
            lines.append(
                #"{"kind":"eof","file":\#(file),"rows":3,"bytes":\#(digest.bytes),"sha256":"\#(digest.sha256)","seen":"\#(UTCTimestamp.now().rfc3339)"}"#
            )
            let validated = try runTool(validate, [], stdin: stdinData(lines))
            #expect(validated.status == 0, "\(validated.stderr)")
            let result = try runTool(load, f.arguments(db), stdin: Data(validated.stdout.utf8))
            #expect(result.status == 0, "\(result.stderr)")
            #expect(
                try count(
                    db,
                    "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('ecommerce_events', 'ecommerce_bad_records', 'ingest_checkpoints')"
                ) == 3)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 2)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_bad_records") == 1)
            #expect(try count(db, "SELECT count(*) FROM ingest_checkpoints WHERE source_file = $1", [name]) == 1)
            #expect(try db.scalar("SELECT source_file FROM ecommerce_bad_records") == name)
            for field in EventField.allCases {
                #expect(try db.scalar("SELECT raw::jsonb ->> $1 FROM ecommerce_bad_records", [field.name]) == injection)
            }
            #expect(try db.scalar("SELECT raw::jsonb ->> 'file' FROM ecommerce_bad_records") == name)
            // The raw text is exactly the line as validate wrote it.
            let rejectLine = try #require(validated.lines.first { $0.contains(#""kind":"reject""#) })
            #expect(try db.scalar("SELECT raw FROM ecommerce_bad_records") == rejectLine)
            #expect(try f.deadLetterLines(name).count == 1)
            #expect(FileManager.default.fileExists(atPath: f.processed.appendingPathComponent(name).path))
        }
    }

    @Test(arguments: [
        #"ecommerce_events"; DROP TABLE ecommerce_events; --"#,
        "ecommerce_events'; DROP TABLE ecommerce_bad_records; --",
        "public.x\"; TRUNCATE ecommerce_events; --",
    ])
    func aHostileTableNameFailsCleanlyWith42P01(table: String) throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            try db.query(
                "INSERT INTO ecommerce_events (event_id, user_id, product_id, event_type, price, event_timestamp) VALUES ($1, 1, 1, 'view', NULL, now())",
                [UUID().uuidString])
            let lines = try f.file("t.csv", valid: 3, rejects: 1)
            let result = try runTool(load, f.arguments(db, ["--table", table]), stdin: stdinData(lines))
            #expect(result.status == 1)
            let errors = result.stderr.split(separator: "\n").filter { $0.contains("ERROR") }
            #expect(errors.count == 1, "\(result.stderr)")
            #expect(errors.first?.contains("42P01") == true, "\(result.stderr)")
            #expect(
                try count(
                    db,
                    "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('ecommerce_events', 'ecommerce_bad_records', 'ingest_checkpoints')"
                ) == 3)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 1)
            #expect(try count(db, "SELECT count(*) FROM ingest_checkpoints") == 0)
            #expect(FileManager.default.fileExists(atPath: f.incoming.appendingPathComponent("t.csv").path))
        }
    }

    // MARK: (2) passwords never in output

    @Test func aPasswordInTheConninfoIsNeverPrinted() throws {
        try TestDatabase.with { db in
            let secret = "SECRET-\(UUID().uuidString)"
            let f = try LoadFixture()
            let lines = try f.file("p.csv", valid: 1, rejects: 0)
            let conninfo = "\(db.conninfo) user=no_such_user_\(getpid()) password=\(secret)"
            let result = try runTool(
                load, Array(f.arguments(db).dropFirst(2)) + ["--db", conninfo, "--max-retries", "1"], stdin: stdinData(lines), timeout: 30)
            #expect(result.status == 1)
            #expect(result.stderr.contains("FATAL 28P01"), "\(result.stderr)")
            #expect(result.stderr.contains("user=no_such_user_\(getpid())"), "\(result.stderr)")
            #expect(!result.stderr.contains(secret))
            #expect(!result.stdout.contains(secret))
            let uri =
                "postgresql://no_such_user:\(secret)@\(ProcessInfo.processInfo.environment["PGHOST"] ?? "localhost"):\(ProcessInfo.processInfo.environment["PGPORT"] ?? "5432")/\(db.name)"
            let viaURI = try runTool(
                load,
                [
                    "--db", uri, "--max-retries", "1", "--incoming", f.incoming.path, "--bad-records", f.bad.path, "--archive",
                    f.processed.path,
                ], stdin: stdinData(lines), timeout: 30)
            #expect(viaURI.status == 1)
            #expect(viaURI.stderr.contains("FATAL 28P01"), "\(viaURI.stderr)")
            #expect(!viaURI.stderr.contains(secret))
            #expect(!viaURI.stdout.contains(secret))
            let help = try runTool(load, ["--help"], environment: environment(["POSTGRES_PASSWORD": secret, "PGPASSWORD": secret]))
            #expect(help.status == 0)
            #expect(help.stdout.contains("--db"))
            #expect(!help.stdout.contains(secret))
            #expect(!help.stderr.contains(secret))
        }
    }

    @Test func aPasswordFromPOSTGRES_PASSWORDIsNeverPrinted() throws {
        try TestDatabase.with { db in
            let secret = "SECRET-\(UUID().uuidString)"
            let f = try LoadFixture()
            let lines = try f.file("p.csv", valid: 1, rejects: 0)
            let env = environment([
                "PGPASSWORD": nil, "PGUSER": nil, "PGDATABASE": nil,
                "POSTGRES_USER": "no_such_user_\(getpid())", "POSTGRES_PASSWORD": secret, "POSTGRES_DB": db.name,
            ])
            let result = try runTool(
                load, ["--max-retries", "1", "--incoming", f.incoming.path, "--bad-records", f.bad.path, "--archive", f.processed.path],
                stdin: stdinData(lines), environment: env, currentDirectory: f.root, timeout: 30)
            #expect(result.status == 1)
            #expect(result.stderr.contains("user=no_such_user_\(getpid()): FATAL 28P01"), "\(result.stderr)")
            #expect(!result.stderr.contains(secret))
            #expect(!result.stdout.contains(secret))
            // Same through an --env-file.
            let envFile = f.root.appendingPathComponent("test.env")
            try Data("POSTGRES_USER=no_such_user\nPOSTGRES_PASSWORD=\(secret)\nPOSTGRES_DB=\(db.name)\n".utf8).write(to: envFile)
            let viaFile = try runTool(
                load,
                [
                    "--env-file", envFile.path, "--max-retries", "1", "--incoming", f.incoming.path, "--bad-records", f.bad.path,
                    "--archive", f.processed.path,
                ],
                stdin: stdinData(lines), environment: environment(["PGPASSWORD": nil, "PGUSER": nil]), currentDirectory: f.root, timeout: 30
            )
            #expect(viaFile.status == 1)
            #expect(viaFile.stderr.contains("user=no_such_user: FATAL 28P01"), "\(viaFile.stderr)")
            #expect(!viaFile.stderr.contains(secret))
            #expect(!viaFile.stdout.contains(secret))
        }
    }

    @Test func aRunningLoadDoesNotShowThePasswordInItsCommandLine() throws {
        try TestDatabase.with { db in
            let password = try #require(ProcessInfo.processInfo.environment["PGPASSWORD"])
            #expect(!password.isEmpty)
            let f = try LoadFixture()
            let process = Process()
            process.executableURL = load
            process.arguments = f.arguments(db)
            process.environment = ProcessInfo.processInfo.environment
            let input = Pipe()
            let errors = Pipe()
            process.standardInput = input
            process.standardOutput = FileHandle.nullDevice
            process.standardError = errors
            try process.run()
            let errText = DrainedPipe(errors)
            defer {
                try? input.fileHandleForWriting.close()
                process.waitUntilExit()
            }
            // Right after spawning, the child may not have exec'd yet (empty or the parent's cmdline).
            var text = ""
            _ = eventually(timeout: 10) {
                let cmdline = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(process.processIdentifier)/cmdline"))) ?? Data()
                text = String(decoding: cmdline, as: UTF8.self)
                return text.contains("--incoming")
            }
            #expect(text.contains("--db"))
            #expect(text.contains(db.name))
            #expect(!text.contains(password))
            try input.fileHandleForWriting.write(contentsOf: stdinData(try f.file("c.csv", valid: 2, rejects: 0)))
            try input.fileHandleForWriting.close()
            process.waitUntilExit()
            let stderr = errText.text()
            #expect(process.terminationStatus == 0, "\(stderr)")
            #expect(!stderr.contains(password))
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 2)
        }
    }

    // MARK: (3) the least-privilege role

    @Test func theLoaderRoleCanInsertAndSelectButNothingElse() throws {
        try TestDatabase.with { db in
            try withLoaderRole(db, prefix: "ingest_test_loader") { role, password in
                let conninfo = "\(db.conninfo) user=\(role) password=\(password)"
                let connection = try PostgresConnection(conninfo: conninfo)
                #expect(try connection.execute("SELECT current_user").rows.first?.first == role)
                let id = UUID().uuidString.lowercased()
                try connection.execute(
                    "INSERT INTO ecommerce_events (event_id, user_id, product_id, event_type, price, event_timestamp) VALUES ($1, 1, 1, 'view', NULL, now())",
                    [id])
                #expect(try connection.execute("SELECT count(*) FROM ecommerce_events").rows.first?.first == "1")
                for statement in [
                    "DROP TABLE ecommerce_events",
                    "ALTER TABLE ecommerce_events ADD COLUMN extra int",
                    "DELETE FROM ecommerce_events",
                    "TRUNCATE ecommerce_events",
                    "UPDATE ecommerce_events SET user_id = 2",
                    "DELETE FROM ingest_checkpoints",
                    "UPDATE ecommerce_bad_records SET raw = ''",
                    "CREATE TABLE public.sneaky (x int)",
                ] {
                    do {
                        try connection.execute(statement)
                        Issue.record("\(statement) succeeded as \(role)")
                    } catch let error as PostgresError {
                        #expect(error.sqlstate == "42501", "\(statement): \(error)")
                    }
                }
                #expect(try count(db, "SELECT count(*) FROM ecommerce_events WHERE user_id = 1") == 1)

                let f = try LoadFixture()
                let lines = try f.file("role.csv", valid: 5, rejects: 2)
                let result = try runTool(
                    load, Array(f.arguments(db).dropFirst(2)) + ["--db", conninfo],
                    stdin: stdinData(lines), environment: environment(["PGPASSWORD": nil, "PGUSER": nil]))
                #expect(result.status == 0, "\(result.stderr)")
                #expect(result.stderr.contains("user=\(role)"), "\(result.stderr)")
                #expect(!result.stderr.contains(password))
                #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 6)
                #expect(try count(db, "SELECT count(*) FROM ecommerce_bad_records WHERE source_file = 'role.csv'") == 2)
                #expect(try count(db, "SELECT count(*) FROM ingest_checkpoints WHERE source_file = 'role.csv' AND rows_loaded = 5") == 1)
            }
        }
    }

    // MARK: (4) secrets stay out of git

    @Test func dotEnvIsIgnoredAndTheExampleHoldsNoSecret() throws {
        let root = TestDatabase.packageRoot
        let git = try runTool(URL(fileURLWithPath: "/usr/bin/git"), ["check-ignore", "-q", ".env"], currentDirectory: root)
        #expect(git.status == 0, "git check-ignore .env: \(git.status) \(git.stderr)")
        let notIgnored = try runTool(URL(fileURLWithPath: "/usr/bin/git"), ["check-ignore", "-q", "Package.swift"], currentDirectory: root)
        #expect(notIgnored.status == 1)
        let example = root.appendingPathComponent(".env.example")
        if let text = try? String(contentsOf: example, encoding: .utf8) {
            for line in text.split(separator: "\n") where line.contains("PASSWORD=") {
                let value = line.split(separator: "=", maxSplits: 1).last.map(String.init) ?? ""
                let placeholder =
                    value.isEmpty || value.lowercased().contains("change") || value.hasPrefix("<")
                    || value.lowercased().contains("example") || value.lowercased().contains("secret")
                #expect(placeholder, "\(line) looks like a real secret")
            }
        } else {
            #expect(!FileManager.default.fileExists(atPath: example.path))
        }
    }
}
