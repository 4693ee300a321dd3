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

    init(db: String?, envFile: String?, environment: [String: String] = ProcessInfo.processInfo.environment) {
        let pgVariables = ["PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE"].filter { environment[$0] != nil }
        let fromFile = envFile.flatMap { try? ConnectionSettings.readEnvFile($0) } ?? [:]
        let fileKeys = fromFile.keys.filter { $0.hasPrefix("POSTGRES_") }.sorted()
        var parts: [String] = []
        if db != nil { parts.append("--db") }
        if !pgVariables.isEmpty { parts.append(pgVariables.joined(separator: ", ")) }
        if db == nil, let envFile, !fileKeys.isEmpty { parts.append(".env found and used (\(envFile): \(fileKeys.joined(separator: ", ")))") }
        source = parts.isEmpty ? "libpq defaults: local socket, port 5432" : "settings from " + parts.joined(separator: "; ")

        var hints: [String] = []
        let port = environment["PGPORT"] ?? environment["POSTGRES_PORT"] ?? fromFile["POSTGRES_PORT"] ?? "5432"
        if db == nil, let embedded = try? String(contentsOfFile: ".pgdata/port", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines), !embedded.isEmpty, embedded != port
        {
            hints.append("the embedded server (.pgdata) is on port \(embedded): eval \"$(bin/pg env)\" and run load again")
        }
        if db == nil, pgVariables.isEmpty, let envFile, !fileKeys.isEmpty {
            hints.append("\(envFile) names this server: fix POSTGRES_HOST/POSTGRES_PORT there, or comment them out")
        }
        hint = hints.isEmpty ? nil : hints.joined(separator: "; ")
    }
}
