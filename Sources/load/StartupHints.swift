import Foundation
import Postgres

/// Where load's connection settings came from, and what to try when the server does not answer:
/// a user who left a `.env` behind, or who runs the embedded server on another port, learns so
/// from the first retry line instead of waiting in silence.
struct StartupHints {
    /// `from .env (./.env)`, `from PG* variables`, …
    var source: String
    /// Said once, with the first failed attempt; nil when nothing more specific fits.
    var hint: String?

    init(source: String, hint: String?) {
        self.source = source
        self.hint = hint
    }

    init(db: String?, envFile: String?, environment: [String: String] = ProcessInfo.processInfo.environment) {
        let pgVariables = ["PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE"].filter { environment[$0] != nil }
        let fromFile = envFile.flatMap { try? ConnectionSettings.readEnvFile($0) } ?? [:]
        let fileKeys = fromFile.keys.filter { $0.hasPrefix("POSTGRES_") }.sorted()
        var parts: [String] = []
        if db != nil { parts.append("--db") }
        if !pgVariables.isEmpty { parts.append(pgVariables.joined(separator: ", ")) }
        if db == nil, let envFile, !fileKeys.isEmpty {
            parts.append(".env found and used (\(envFile): \(fileKeys.joined(separator: ", ")))")
        }
        source = parts.isEmpty ? "libpq defaults: local socket, port 5432" : "settings from " + parts.joined(separator: "; ")

        var hints: [String] = []
        let port = environment["PGPORT"] ?? environment["POSTGRES_PORT"] ?? fromFile["POSTGRES_PORT"] ?? "5432"
        let cluster = environment["INGEST_PGDATA"] ?? ".pgdata"
        if db == nil,
            let embedded = try? String(contentsOfFile: cluster + "/port", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines), !embedded.isEmpty, embedded != port
        {
            hints.append("the embedded server (\(cluster)) is on port \(embedded): eval \"$(bin/pg env)\" and run load again")
        }
        if db == nil, pgVariables.isEmpty, let envFile, !fileKeys.isEmpty {
            hints.append("\(envFile) names this server: fix POSTGRES_HOST/POSTGRES_PORT there, or comment them out")
        }
        hint = hints.isEmpty ? nil : hints.joined(separator: "; ")
    }

    /// The embedded server of bin/pg (`$INGEST_PGDATA`, else `./.pgdata`), when nothing else names
    /// a server: no `--db`, no `PG*` variable, no `POSTGRES_*` key. So load run by hand in the
    /// project folder uses the same database as bin/run, as `eval "$(bin/pg env)"` would.
    static func embeddedServer(db: String?, envFile: String?, environment: [String: String] = ProcessInfo.processInfo.environment)
        -> (conninfo: String, port: String)?
    {
        guard db == nil, !environment.keys.contains(where: { $0.hasPrefix("PG") || $0.hasPrefix("POSTGRES_") }) else { return nil }
        let fromFile = envFile.flatMap { try? ConnectionSettings.readEnvFile($0) } ?? [:]
        guard !fromFile.keys.contains(where: { $0.hasPrefix("POSTGRES_") }) else { return nil }
        let dir = environment["INGEST_PGDATA"] ?? ".pgdata"
        func read(_ name: String) -> String? {
            (try? String(contentsOfFile: dir + "/" + name, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard let port = read("port"), !port.isEmpty, let password = read("password") else { return nil }
        let q = ConnectionSettings.quoteConninfoValue
        let database = environment["INGEST_DATABASE"] ?? "ecommerce"
        return ("host=127.0.0.1 port=\(q(port)) user=postgres dbname=\(q(database)) password=\(q(password))", port)
    }
}
