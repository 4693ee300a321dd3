import Foundation
import Postgres
import TestSupport
import Testing

/// A copy of the project's scripts, schema and README in a temp folder, with empty data folders
/// and `.build/release` pointing at the tools this test run built: the scripts run as a user
/// runs them, without touching the checkout's data, logs or .pgdata.
final class ProjectCopy {
    let root: URL

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("product-\(UUID().uuidString.prefix(8))")
        let fm = FileManager.default
        try fm.createDirectory(at: root, withIntermediateDirectories: true)
        for item in ["bin", "sql", "docs", "docker", "contracts", "README.md", ".env.example", "docker-compose.yml", "Dockerfile"] {
            try fm.copyItem(at: TestDatabase.packageRoot.appendingPathComponent(item), to: root.appendingPathComponent(item))
        }
        for dir in ["data/incoming", "data/processed", "data/bad_records", "data/quarantine", "logs", ".build"] {
            try fm.createDirectory(at: root.appendingPathComponent(dir), withIntermediateDirectories: true)
        }
        try fm.createSymbolicLink(at: root.appendingPathComponent(".build/release"), withDestinationURL: Executables.directory)
    }

    deinit { try? FileManager.default.removeItem(at: root) }

    func url(_ path: String) -> URL { root.appendingPathComponent(path) }

    func files(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: url(dir).path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    /// The environment of a user with no database configured: bin/run must use the embedded one.
    func embeddedEnvironment() -> [String: String] {
        // bin/test exports INGEST_PGDATA (its own cluster): the copy must use its .pgdata.
        var env = ProcessInfo.processInfo.environment.filter {
            !$0.key.hasPrefix("PG") && !$0.key.hasPrefix("POSTGRES_") && !$0.key.hasPrefix("INGEST_")
        }
        env["INGEST_BIN_DIR"] = Executables.directory.path
        env["INGEST_PGPORT_FROM"] = "5750"
        return env
    }

    func bash(_ script: String, environment: [String: String], timeout: Double = 60) throws -> ToolResult {
        try runTool(
            URL(fileURLWithPath: "/bin/bash"), ["-c", "set -euo pipefail\n" + script],
            environment: environment, currentDirectory: root, timeout: timeout)
    }
}

/// gen's manifest: per file, the valid event ids and the number of invalid rows.
struct Manifest {
    var validIDs: Set<String> = []
    var invalid = 0
    var files = 0

    init(_ url: URL) throws {
        for line in try String(contentsOf: url, encoding: .utf8).split(separator: "\n") {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            validIDs.formUnion(object["valid_event_ids"] as! [String])
            invalid += object["invalid"] as! Int
            files += 1
        }
    }
}

@Suite(.serialized) struct ProductTests {
    @Test func everyScriptExplainsItself() throws {
        let copy = try ProjectCopy()
        // Every executable file in bin/, so a new script cannot ship without --help.
        let scripts = try FileManager.default.contentsOfDirectory(atPath: copy.url("bin").path).filter {
            FileManager.default.isExecutableFile(atPath: copy.url("bin/\($0)").path)
                && !$0.hasPrefix(".") && $0 != "lib"
        }.sorted()
        #expect(scripts.contains("watch-latency") && scripts.count >= 12, "\(scripts)")
        for script in scripts {
            let result = try runTool(copy.url("bin/\(script)"), ["--help"])
            #expect(result.status == 0, "bin/\(script) --help: \(result.stderr)")
            #expect(result.stdout.contains("Usage: bin/\(script)"), "bin/\(script) --help: \(result.stdout)")
        }
        let bad = try runTool(copy.url("bin/run"), ["--no-such-option"])
        #expect(bad.status == 64)
    }

    /// bin/run from a fresh copy on the embedded PostgreSQL: loads exactly gen's valid rows,
    /// dead-letters exactly the invalid ones, stops cleanly on SIGINT, resumes without duplicates.
    @Test func runLoadsWhatGenWroteStopsOnSigintAndResumes() throws {
        let copy = try ProjectCopy()
        let env = copy.embeddedEnvironment()
        defer { _ = try? copy.bash("bin/pg stop", environment: env) }
        let manifest = copy.url("manifest.ndjson").path
        func psql(_ sql: String) throws -> String {
            let r = try copy.bash("bin/pg psql -Atq -c \(shellQuoted(sql))", environment: env)
            #expect(r.status == 0, "\(r.stderr)")
            return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        // 1. Non-interactive: 4 files, then stop once all are committed.
        let first = try runTool(
            copy.url("bin/run"),
            [
                "--files", "4", "--", "--interval", "0", "--seed", "11", "--rows-per-file", "60",
                "--invalid-rate", "0.1", "--manifest", manifest,
            ],
            environment: env, currentDirectory: copy.root, timeout: 90)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stderr.contains("(embedded, cluster \(copy.root.path)/.pgdata)"), "\(first.stderr)")
        var truth = try Manifest(URL(fileURLWithPath: manifest))
        #expect(truth.files == 4 && truth.invalid > 0)
        let loaded = Set(try psql("SELECT event_id FROM ecommerce_events").split(separator: "\n").map(String.init))
        #expect(loaded == truth.validIDs)
        #expect(try psql("SELECT count(*) FROM ecommerce_bad_records") == "\(truth.invalid)")
        #expect(try psql("SELECT count(*) FROM ingest_checkpoints") == "4")
        #expect(copy.files("data/incoming").isEmpty)
        #expect(copy.files("data/processed").count == 4)
        #expect(FileManager.default.fileExists(atPath: copy.url("logs/pipeline.log").path))
        #expect(FileManager.default.fileExists(atPath: copy.url("logs/gen.log").path))

        // 2. Interactive: gen keeps writing until SIGINT; everything stops cleanly, exit 0.
        let process = Process()
        process.executableURL = copy.url("bin/run")
        process.arguments = [
            "--progress-every", "1", "--", "--interval", "100ms", "--seed", "12",
            "--rows-per-file", "40", "--manifest", manifest,
        ]
        process.environment = env
        process.currentDirectoryURL = copy.root
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        let stderr = DrainedPipe(errors)
        try process.run()
        let progressed = eventually(timeout: 40) {
            (Int((try? psql("SELECT count(*) FROM ingest_checkpoints")) ?? "") ?? 0) >= 8
        }
        #expect(progressed)
        kill(process.processIdentifier, SIGINT)
        let stopped = eventually(timeout: 30) { !process.isRunning }
        #expect(stopped, "bin/run still running 30 s after SIGINT")
        if !stopped { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        let log = stderr.text()
        #expect(process.terminationStatus == 0, "\(log)")
        #expect(log.contains("stopping:") && log.contains("pipeline: stopped cleanly"), "\(log)")

        // 3. Resume without gen: the files left pending load; a replayed file loads nothing twice.
        let archived = copy.files("data/processed")
        try FileManager.default.copyItem(
            at: copy.url("data/processed/\(archived[0])"),
            to: copy.url("data/incoming/\(archived[0])"))
        let resumed = try runTool(
            copy.url("bin/run"), ["--no-gen", "--drain"],
            environment: env, currentDirectory: copy.root, timeout: 60)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        truth = try Manifest(URL(fileURLWithPath: manifest))
        #expect(copy.files("data/incoming").isEmpty)
        #expect(try psql("SELECT count(*) FROM ecommerce_events") == "\(truth.validIDs.count)")
        #expect(try psql("SELECT count(DISTINCT event_id) FROM ecommerce_events") == "\(truth.validIDs.count)")
        #expect(try psql("SELECT count(*) FROM ecommerce_bad_records") == "\(truth.invalid)")
        #expect(try psql("SELECT count(*) FROM ingest_checkpoints WHERE source_file IS NOT NULL") == "\(truth.files)")

        // bin/status reads the same tables.
        let status = try copy.bash("bin/status", environment: env)
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("rows loaded: \(truth.validIDs.count)"), "\(status.stdout)")
        #expect(status.stdout.contains("files committed: \(truth.files)"), "\(status.stdout)")
    }

    /// Every ```sh block of the README, run as written against the test database: with the tools
    /// in `.build/release` (no INGEST_BIN_DIR), and built elsewhere (INGEST_BIN_DIR, no
    /// `.build/release`). The dead-letter re-send loads rows and adds no dead letter.
    @Test(arguments: ["INGEST_BIN_DIR", ".build/release"])
    func readmeCommandsWork(tools: String) throws {
        try TestDatabase.with { db in
            let copy = try ProjectCopy()
            var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("INGEST_") }
            env["PGDATABASE"] = db.name
            if tools == "INGEST_BIN_DIR" {
                env["INGEST_BIN_DIR"] = Executables.directory.path
                try FileManager.default.removeItem(at: copy.url(".build/release"))
            }
            let readme = try String(contentsOf: copy.url("README.md"), encoding: .utf8)
            let blocks = shellBlocks(readme)
            #expect(blocks.count >= 10, "README has \(blocks.count) sh blocks")
            var ran = 0
            var resent = false
            for block in blocks where !block.contains("# not run by tests") {
                let before = try Int(db.scalar("SELECT count(*) FROM ecommerce_bad_records") ?? "") ?? -1
                let loadedBefore = try Int(db.scalar("SELECT count(*) FROM ecommerce_events") ?? "") ?? -1
                // The re-send's input: the dead letters whose only problems are the price. Random
                // data can have none, so the check is that exactly those load, not that some do.
                var priceOnly = 0
                let isResend = block.contains("data/bad_records/*.ndjson") && block.contains("| \"$tools/load\"")
                if isResend {
                    let selected = try copy.bash(
                        #"cat data/bad_records/*.ndjson | jq -c 'select(all(.reasons[]; .field == "price"))' | wc -l"#, environment: env)
                    priceOnly = Int(selected.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
                }
                let result = try copy.bash(block, environment: env, timeout: 60)
                #expect(result.status == 0, "README block failed (\(result.status)):\n\(block)\nstderr: \(result.stderr)")
                if isResend {
                    resent = true
                    #expect(try Int(db.scalar("SELECT count(*) FROM ecommerce_bad_records") ?? "") == before, "re-sent rows rejected again")
                    #expect(
                        try Int(db.scalar("SELECT count(*) FROM ecommerce_events") ?? "") == loadedBefore + priceOnly,
                        "\(priceOnly) rows to re-send: \(result.stderr.suffix(1500))")
                }
                ran += 1
            }
            #expect(ran >= 10)
            #expect(resent, "the re-send recipe ran")
            #expect(try Int(db.scalar("SELECT count(*) FROM ecommerce_events") ?? "") ?? 0 > 0)
        }
    }

    /// docker-compose.yml resolves with a .env made from .env.example, and the image is built by
    /// the same bin/setup that bin/run calls.
    @Test func composeFileResolves() throws {
        let copy = try ProjectCopy()
        try FileManager.default.copyItem(at: copy.url(".env.example"), to: copy.url(".env"))
        let env = ProcessInfo.processInfo.environment
        if geteuid() == 0 {
            let install = try copy.bash(
                "source bin/lib/common.sh; command -v docker-compose >/dev/null || need_apt_packages docker-compose",
                environment: env, timeout: 300)
            #expect(install.status == 0, "\(install.stderr)")
        }
        let result = try copy.bash("docker-compose config", environment: env)
        #expect(result.status == 0, "\(result.stderr)")
        let config = result.stdout
        for service in ["postgres:", "pipeline:", "gen:"] { #expect(config.contains("  \(service)\n"), "\(service)") }
        #expect(config.contains("image: postgres:16"))
        #expect(config.contains("pg_isready"))
        #expect(config.contains("\(copy.root.path)/sql/postgres_setup.sql:/docker-entrypoint-initdb.d/"))
        #expect(config.contains("\(copy.root.path)/docker/initdb/20-loader-role.sh:/docker-entrypoint-initdb.d/"))
        #expect(config.contains("\(copy.root.path)/data:/app/data"))
        #expect(config.contains("\(copy.root.path)/logs:/app/logs"))
        #expect(config.contains("PGUSER: ingest"))
        #expect(config.contains("PGPASSWORD: change-me-too"))
        #expect(config.contains("PGHOST: postgres"))
        #expect(config.contains("published: 5432"))
        #expect(config.contains("http://127.0.0.1:9187/readyz"), "the pipeline's health check")

        let dockerfile = try String(contentsOf: copy.url("Dockerfile"), encoding: .utf8)
        #expect(dockerfile.contains("FROM swift:6"))
        #expect(dockerfile.split(separator: "\n").contains { $0.hasPrefix("RUN bin/setup") })
        let run = try String(contentsOf: copy.url("bin/run"), encoding: .utf8)
        #expect(run.contains("\"$INGEST_ROOT/bin/setup\""))
    }

    /// The Compose init script makes a login that can load but not, say, delete.
    @Test func loaderRoleFromInitScriptLoadsWithLeastPrivilege() throws {
        try TestDatabase.with { db in
            let copy = try ProjectCopy()
            let role = "loader_\(UInt32.random(in: 0 ... .max))"
            var env = ProcessInfo.processInfo.environment
            env["POSTGRES_DB"] = db.name
            env["POSTGRES_USER"] = env["PGUSER"] ?? "postgres"
            env["POSTGRES_LOADER_USER"] = role
            env["POSTGRES_LOADER_PASSWORD"] = "pw-\(role)"
            defer { _ = try? db.query("DROP ROLE IF EXISTS \(role)") }
            let created = try copy.bash("docker/initdb/20-loader-role.sh && docker/initdb/20-loader-role.sh", environment: env)
            #expect(created.status == 0, "\(created.stderr)")
            env["PGDATABASE"] = db.name
            env["PGUSER"] = role
            env["PGPASSWORD"] = "pw-\(role)"
            env["INGEST_BIN_DIR"] = Executables.directory.path
            let run = try copy.bash(
                """
                .build/release/gen --files 2 --interval 0 --seed 5 --out data/incoming 2>/dev/null
                bin/pipeline --once
                bin/psql -Atc 'SELECT count(*) FROM ingest_checkpoints'
                ! bin/psql -c 'DELETE FROM ecommerce_events' 2>/dev/null
                """, environment: env)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "2")
        }
    }
}

/// The bodies of the fenced ```sh blocks, in order.
func shellBlocks(_ markdown: String) -> [String] {
    var blocks: [String] = []
    var current: [Substring]?
    for line in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
        if current == nil, line == "```sh" {
            current = []
        } else if current != nil, line == "```" {
            blocks.append(current!.joined(separator: "\n"))
            current = nil
        } else {
            current?.append(line)
        }
    }
    return blocks
}

func shellQuoted(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
