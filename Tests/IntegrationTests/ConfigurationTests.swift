import Foundation
import TestSupport
import Testing

/// Connection settings as every tool that connects resolves them (ConnectionSettings.resolve):
/// one precedence for load and consume, and a setting that cannot work exits 1 naming its key, in
/// the tools and in bin/, instead of a retry forever or a fallback to another server.
@Suite struct ConfigurationTests {
    /// A folder to run the tools in (their default env file is ./.env), with the environment of a
    /// user who configured nothing.
    final class Folder {
        let root: URL
        var environment: [String: String]

        init() throws {
            root = FileManager.default.temporaryDirectory.appendingPathComponent("config-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            environment = ProcessInfo.processInfo.environment.filter {
                !$0.key.hasPrefix("PG") && !$0.key.hasPrefix("POSTGRES_") && !$0.key.hasPrefix("INGEST_")
            }
        }

        deinit { try? FileManager.default.removeItem(at: root) }

        func write(_ path: String, _ text: String) throws {
            let url = root.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }

        func run(_ tool: String, _ arguments: [String]) throws -> ToolResult {
            try runTool(Executables.url(tool), arguments, environment: environment, currentDirectory: root, timeout: 60)
        }

        /// The server `tool` says it uses on its start-up line (`marker` precedes it), read from its
        /// log while it waits; then it is stopped.
        func server(_ tool: String, _ arguments: [String], marker: String) throws -> String {
            let log = root.appendingPathComponent("\(tool)-\(UUID().uuidString.prefix(6)).log").path
            let quoted = ([Executables.url(tool).path] + arguments).map(shellQuoted).joined(separator: " ")
            let process = try SpawnedProcess(
                ["/bin/sh", "-c", "cd \(shellQuoted(root.path)) && exec \(quoted) </dev/null"], environment: environment, stderr: log)
            defer {
                process.signal(SIGKILL)
                process.wait(timeout: 10)
            }
            let text = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
            guard eventually(timeout: 30, { text().contains(marker) }), let range = text().range(of: marker) else {
                Issue.record("\(tool) never logged \(marker): \(text())")
                return ""
            }
            return String(text()[range.upperBound...].prefix { $0 != "\n" })
        }
    }

    static let consumeArguments = ["--brokers", "127.0.0.1:9", "--topic", "events", "--group", "g"]

    /// load and consume name the same server, for the same reason, in each case of the precedence.
    @Test(arguments: ["nothing configured, embedded server", "nothing configured, no embedded server", ".env", "PG*", "--db"])
    func consumeAndLoadPickTheSameServer(configuration: String) throws {
        let folder = try Folder()
        var extra: [String] = []
        // The embedded server's folder is there in every case but one: it is used only when
        // nothing else is configured.
        if configuration != "nothing configured, no embedded server" {
            try folder.write(".pgdata/port", "5999\n")
            try folder.write(".pgdata/password", "secret-embedded\n")
        }
        var expected =
            "host=127.0.0.1 port=5999 dbname=ecommerce user=postgres (nothing configured: the embedded server (bin/pg) on port 5999)"
        switch configuration {
        case "nothing configured, embedded server":
            // The README's advice: the five POSTGRES_* connection lines commented out; other keys stay.
            try folder.write(
                ".env",
                "# POSTGRES_DB=ecommerce\n# POSTGRES_USER=postgres\n# POSTGRES_PASSWORD=x\n# POSTGRES_HOST=localhost\n# POSTGRES_PORT=5432\nPOSTGRES_LOADER_USER=ingest\n"
            )
        case ".env":
            try folder.write(
                ".env", "POSTGRES_HOST=db.example\nPOSTGRES_PORT=6001\nPOSTGRES_DB=shop\nPOSTGRES_USER=u\nPOSTGRES_PASSWORD=pw\n")
            expected =
                "host=db.example port=6001 dbname=shop user=u (settings from .env found and used (.env: POSTGRES_DB, POSTGRES_HOST, POSTGRES_PASSWORD, POSTGRES_PORT, POSTGRES_USER))"
        case "PG*":
            folder.environment["PGHOST"] = "pg.example"
            folder.environment["PGPORT"] = "6002"
            expected = "host=pg.example port=6002 (settings from PGHOST, PGPORT)"
        case "--db":
            extra = ["--db", "host=cli.example port=6003 dbname=cli"]
            expected = "host=cli.example port=6003 dbname=cli (settings from --db)"
        case "nothing configured, no embedded server":
            expected = "(libpq defaults) (libpq defaults: local socket, port 5432)"
        default: break
        }
        let load = try folder.server("load", extra, marker: " - load - INFO - connecting to ")
        let consume = try folder.server("consume", Self.consumeArguments + extra, marker: " - consume - INFO - stored offsets at ")
        #expect(load == expected)
        #expect(consume == load)
        #expect(!load.contains("secret") && !load.contains("pw"))
    }

    /// A setting that cannot work: exit 1, one line naming the key, from load, consume and bin/.
    @Test(arguments: [
        (
            ".env", "POSTGRES_HOST=localhost\nPOSTGRES_PORT=notaport\n", "",
            #"POSTGRES_PORT (in .env): not a port number (1-65535): "notaport""#
        ),
        (".env", "POSTGRES_HOST=localhost\nPOSTGRES_PORT 5432\n", "", ".env:2: not a KEY=VALUE line"),
        (".env", "POSTGRES_PASSWORD=\"unclosed\n", "", #".env:1: POSTGRES_PASSWORD: the value's opening " is not closed"#),
        ("PGPORT", "99999", "", #"PGPORT: not a port number (1-65535): "99999""#),
        ("--db", "port=99999", "load", #"--db: port: not a port number (1-65535): "99999""#),
        (
            "--db", "host=x sslmode=bogus", "load",
            #"--db: sslmode: not one of disable, allow, prefer, require, verify-ca, verify-full: "bogus""#
        ),
    ])
    func aSettingThatCannotWorkExits1NamingIt(place: String, value: String, only: String, message: String) throws {
        let copy = try ProjectCopy()
        let folder = try Folder()
        var extra: [String] = []
        switch place {
        case ".env":
            try folder.write(".env", value)
            try value.write(to: copy.url(".env"), atomically: true, encoding: .utf8)
        case "PGPORT": folder.environment["PGPORT"] = value
        default: extra = ["--db", value]
        }
        let load = try folder.run("load", extra)
        #expect(load.status == 1 && load.stderr == "load: Error: \(message)\n", "\(load.stderr)")
        let consume = try folder.run("consume", Self.consumeArguments + extra)
        #expect(consume.status == 1 && consume.stderr == "consume: Error: \(message)\n", "\(consume.stderr)")
        guard only.isEmpty else { return }
        // bin/ reads the project's .env by the same rules, with its path.
        var env = folder.environment
        env["INGEST_BIN_DIR"] = Executables.directory.path
        let status = try copy.bash("bin/status", environment: env)
        let named = place == ".env" ? message.replacingOccurrences(of: ".env:", with: copy.url(".env").path + ":") : message
        #expect(status.status == 1 && status.stderr == "status: error: \(named)\n", "\(status.stderr)")
    }

    /// A configured server that does not answer is the job's all the same: bin/run exits 1 saying
    /// so, and never loads into the embedded server instead (it is not even started).
    @Test func aConfiguredServerThatDoesNotAnswerIsNotReplaced() throws {
        let copy = try ProjectCopy()
        let port = try ClosedPort()
        try "POSTGRES_HOST=127.0.0.1\nPOSTGRES_PORT=\(port.number)\n".write(to: copy.url(".env"), atomically: true, encoding: .utf8)
        let run = try copy.bash("bin/run --no-gen --drain", environment: copy.embeddedEnvironment(), timeout: 120)
        #expect(run.status == 1, "\(run.stderr)")
        #expect(
            run.stderr.contains(
                "run: error: the configured PostgreSQL \(NSUserName())@127.0.0.1:\(port.number)/ecommerce does not answer (pg_isready; set by POSTGRES_HOST POSTGRES_PORT)"
            ), "\(run.stderr)")
        #expect(!run.stderr.contains("(embedded, cluster"), "\(run.stderr)")
        #expect(!FileManager.default.fileExists(atPath: copy.url(".pgdata").path), "the embedded server was not created")
    }
}
