import Postgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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

    init(db: String?, envFile: String?, environment: [String: String] = processEnvironment()) {
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
            let embedded = readSmallFile(cluster + "/port").map(trimmed), !embedded.isEmpty, embedded != port
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
    static func embeddedServer(db: String?, envFile: String?, environment: [String: String] = processEnvironment())
        -> (conninfo: String, port: String)?
    {
        guard db == nil, !environment.keys.contains(where: { $0.hasPrefix("PG") || $0.hasPrefix("POSTGRES_") }) else { return nil }
        let fromFile = envFile.flatMap { try? ConnectionSettings.readEnvFile($0) } ?? [:]
        guard !fromFile.keys.contains(where: { $0.hasPrefix("POSTGRES_") }) else { return nil }
        let dir = environment["INGEST_PGDATA"] ?? ".pgdata"
        func read(_ name: String) -> String? { readSmallFile(dir + "/" + name).map(trimmed) }
        guard let port = read("port"), !port.isEmpty, let password = read("password") else { return nil }
        let q = ConnectionSettings.quoteConninfoValue
        let database = environment["INGEST_DATABASE"] ?? "ecommerce"
        return ("host=127.0.0.1 port=\(q(port)) user=postgres dbname=\(q(database)) password=\(q(password))", port)
    }
}

// `environ`, open(2) and read(2) rather than Foundation's ProcessInfo and String(contentsOfFile:):
// with FlyingFox gone these were all that linked full Foundation (ICU, curl) into load; without
// both, `load --help` peaks at 18.9 MB RSS instead of 27.0 MB (see MetricsEndpoint).

/// The process environment, as ProcessInfo would give it (the first of duplicate names wins).
func processEnvironment() -> [String: String] {
    var result: [String: String] = [:]
    let first: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = environ  // optional on Darwin only
    guard var entry = first else { return result }
    while let pointer = entry.pointee {
        let text = String(cString: pointer)
        if let equals = text.firstIndex(of: "=") {
            let name = String(text[..<equals])
            if result[name] == nil { result[name] = String(text[text.index(after: equals)...]) }
        }
        entry += 1
    }
    return result
}

/// The text of a small file (a port number, a password), nil when it cannot be read.
func readSmallFile(_ path: String, limit: Int = 1 << 16) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < limit {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n >= 0 else { return nil }
        if n == 0 { break }
        bytes += chunk[..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// `text` without leading and trailing white space and newlines.
func trimmed(_ text: String) -> String {
    let isSpace: (Character) -> Bool = { $0.isWhitespace || $0.isNewline }
    guard let first = text.firstIndex(where: { !isSpace($0) }), let last = text.lastIndex(where: { !isSpace($0) }) else { return "" }
    return String(text[first...last])
}
