import Posix
import Postgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What to try when the server does not answer: a user who left a `.env` behind, or who runs
/// the embedded server on another port, learns so from the first retry line instead of waiting
/// in silence. Where the settings came from is ``ResolvedConnection/source`` (shared with consume).
struct StartupHints {
    /// Said once, with the first failed attempt; nil when nothing more specific fits.
    var hint: String?

    init(resolved: ResolvedConnection, db: String?, envFile: String?, environment: [String: String] = processEnvironment()) {
        if resolved.embeddedPort != nil {
            hint = "bin/pg status; bin/pg start"
            return
        }
        var envPath = envFile
        if envPath == nil && access(".env", R_OK) == 0 { envPath = ".env" }
        let pgVariables = ["PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE"].filter { environment[$0] != nil }
        let fromFile = envPath.flatMap { try? ConnectionSettings.readEnvFile($0) } ?? [:]
        let fileKeys = fromFile.keys.filter { $0.hasPrefix("POSTGRES_") }.sorted()
        var hints: [String] = []
        let port = environment["PGPORT"] ?? environment["POSTGRES_PORT"] ?? fromFile["POSTGRES_PORT"] ?? "5432"
        let cluster = environment["INGEST_PGDATA"] ?? ".pgdata"
        if db == nil,
            let embedded = (try? readFile(cluster + "/port", limit: 64)).map { String(decoding: $0, as: UTF8.self).trimmingWhitespace() },
            !embedded.isEmpty, embedded != port
        {
            hints.append("the embedded server (\(cluster)) is on port \(embedded): eval \"$(bin/pg env)\" and run load again")
        }
        if db == nil, pgVariables.isEmpty, let envPath, !fileKeys.isEmpty {
            hints.append(
                "\(envPath) names this server: fix POSTGRES_HOST/POSTGRES_PORT there, or comment out its POSTGRES_* lines to use the embedded one"
            )
        }
        hint = hints.isEmpty ? nil : hints.joined(separator: "; ")
    }
}

// `environ` (Posix's processEnvironment), open(2) and read(2) rather than Foundation's
// ProcessInfo and String(contentsOfFile:): with FlyingFox gone these were all that linked full
// Foundation (ICU, curl) into load; without both, `load --help` peaks at 18.9 MB RSS instead of
// 27.0 MB (see MetricsEndpoint).
