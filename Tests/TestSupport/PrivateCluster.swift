import Foundation

/// A PostgreSQL cluster of a test's own, for tests that stop and start the server.
///
/// Made with the same script functions as `bin/pg` (bin/lib/pg-embedded.sh), in a temp folder.
public final class PrivateCluster: @unchecked Sendable {
    public let folder: URL
    /// `export PGHOST=… PGPORT=… PGUSER=… PGPASSWORD=… PGDATABASE=…` parsed into a dictionary.
    public private(set) var environment: [String: String] = [:]

    /// The network namespace the server runs in (nil: the machine's own); `script` and `psql`
    /// run there too, so they reach it at 127.0.0.1.
    public let namespace: NetworkNamespace?

    public init(namespace: NetworkNamespace? = nil) throws {
        self.namespace = namespace
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try script("pg_start >&2; apply_schema >&2")
        let exports = try script("pg_env")
        for word in exports.split(separator: " ").dropFirst() {
            let parts = word.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 { environment[parts[0]] = parts[1].trimmingCharacters(in: .whitespacesAndNewlines) }
        }
    }

    deinit {
        _ = try? script("pg_stop >&2")
        try? FileManager.default.removeItem(at: folder)
    }

    /// Stops the server: `fast` (sessions ended) or `immediate` (like a crash).
    public func stop(mode: String = "fast") throws {
        try script(
            #""$(_pg_bindir)/pg_ctl" --version >/dev/null; _pg_as_owner "$(_pg_bindir)/pg_ctl" stop --pgdata="$(pg_cluster_dir)/data" --mode=\#(mode) --wait >&2"#
        )
    }

    public func start() throws {
        try script("pg_start >&2")
    }

    /// The process environment with this cluster's PG* variables.
    public func processEnvironment() -> [String: String] {
        ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }

    @discardableResult
    public func script(_ body: String) throws -> String {
        let root = TestDatabase.packageRoot.path
        var env = ProcessInfo.processInfo.environment
        env["INGEST_PGDATA"] = folder.path
        env["INGEST_PGPORT_FROM"] = "5600"
        let output = folder.appendingPathComponent("script.out").path
        let errors = folder.appendingPathComponent("script.err").path
        try? FileManager.default.removeItem(atPath: output)
        try? FileManager.default.removeItem(atPath: errors)
        let command = [
            "/bin/bash", "-c",
            "set -euo pipefail; \(closeInheritedDescriptors) source \"$1/bin/lib/common.sh\"; source \"$1/bin/lib/pg-embedded.sh\"; \(body)",
            "bash", root,
        ]
        let child = try SpawnedProcess(
            namespace?.command(command) ?? command, environment: env, stdout: output, stderr: errors)
        guard child.wait(timeout: 120) else {
            child.signal(SIGKILL)
            throw TestDatabaseError("cluster script still running after 120 s: \(body)")
        }
        let stdout = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        guard child.exitCode == 0 else {
            let stderr = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
            throw TestDatabaseError("cluster script failed (\(child.exitCode ?? -1)): \(body)\n\(stderr)")
        }
        return stdout
    }

    /// Like ``psql(_:)``, over the server's unix socket: it works while the test drops the TCP
    /// port's packets (``NetworkNamespace/partition(port:_:)``).
    public func psqlOverSocket(_ sql: String) throws -> String {
        try script(
            #"eval "$(pg_env)"; PGHOST="$(pg_cluster_dir)/run" "$(_pg_bindir)/psql" -Atq -v ON_ERROR_STOP=1 -c "# + shellQuote(sql)
        ).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Makes the first COPY (or INSERT) that reaches a row of `ecommerce_events` with this
    /// user_id pause 5 s in a trigger, once (a sequence survives rollbacks): a test can then
    /// start a fault while the server is inside the batch, holding its locks. Seen as
    /// `wait_event = 'PgSleep'` in pg_stat_activity.
    public func pauseTheCopyOnce(atUserID userID: Int) throws {
        try script(
            """
            pg_psql -q -v ON_ERROR_STOP=1 <<'SQL'
            CREATE SEQUENCE pause_once;
            CREATE FUNCTION pause_copy() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF nextval('pause_once') = 1 THEN PERFORM pg_sleep(5); END IF; RETURN NEW; END $$;
            CREATE TRIGGER pause_copy BEFORE INSERT ON ecommerce_events FOR EACH ROW
              WHEN (NEW.user_id = \(userID)) EXECUTE FUNCTION pause_copy();
            SQL
            """)
    }

    /// Runs one SQL query through psql and returns its unaligned output.
    public func psql(_ sql: String) throws -> String {
        try script("pg_psql -Atq -v ON_ERROR_STOP=1 -c \(shellQuote(sql))").trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// The test process has other tools' pipes open; a server started from here must not inherit
/// them, or those tools' readers would never see end of file.
private let closeInheritedDescriptors =
    #"for fd in /proc/$$/fd/*; do n=${fd##*/}; if [ "$n" -gt 2 ] 2>/dev/null; then eval "exec $n>&-" 2>/dev/null || true; fi; done;"#

func shellQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
