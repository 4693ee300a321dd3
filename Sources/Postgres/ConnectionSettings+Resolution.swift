import Posix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
/// A connection setting that can never work as written (a port that is not a number, a
/// conninfo libpq cannot parse, a `.env` line that is not `KEY=VALUE`). The tools exit 1 with
/// this one line instead of retrying a connection that cannot succeed, and never go to another
/// server instead: a user who configured a server must not find their rows somewhere else.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The server a tool connects to, decided the same way by every tool that connects (load and
/// consume), so the offsets consume reads and the rows load writes are in one database.
public struct ResolvedConnection: Sendable {
    /// The settings to connect with (``ConnectionSettings/conninfo`` may hold a password).
    public let settings: ConnectionSettings
    /// Where they came from, for the start-up line: `settings from --db`, `nothing configured:
    /// the embedded server (bin/pg) on port 5433`, …
    public let source: String
    /// The embedded server's port when it was chosen (nothing else configured).
    public let embeddedPort: String?
}

extension ConnectionSettings {
    /// Variables that name a server or a login: any of them set means the user configured one,
    /// and the embedded server is never used instead.
    public static let configuringVariables = [
        "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSERVICE",
        "POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD",
    ]

    /// The one precedence, highest first:
    /// 1. `--db` (a conninfo or URI);
    /// 2. `PG*` variables (libpq reads them itself);
    /// 3. `POSTGRES_*` keys from the environment, else from the env file;
    /// 4. when none of those names anything: the embedded server of bin/pg (`$INGEST_PGDATA`, else
    ///    `./.pgdata`) if it has been created;
    /// 5. libpq's defaults (the local socket, port 5432).
    ///
    /// Every value that can be checked without connecting is checked here, and a bad one throws
    /// ``ConfigurationError`` naming its key and where it came from.
    ///
    /// - Parameter envFile: the `--env-file` given (must exist), or nil for `./.env` when present.
    public static func resolve(
        db: String?, envFile: String?, environment: [String: String] = processEnvironment()
    ) throws -> ResolvedConnection {
        var envPath = envFile
        if envPath == nil && access(".env", R_OK) == 0 { envPath = ".env" }
        var fromFile: [String: String] = [:]
        if let envPath {
            do {
                fromFile = try readEnvFile(envPath, strict: true)
            } catch let error as PostgresError {
                throw ConfigurationError(error.message)
            }
        }
        try checkVariables(environment, fromFile: fromFile, envPath: envPath)

        if let db, !db.isEmpty {
            try checkConninfo(db, origin: "--db")
            return ResolvedConnection(
                settings: try ConnectionSettings(db: db, environment: environment, envFile: envPath),
                source: "settings from --db", embeddedPort: nil)
        }
        let variables = configuringVariables.filter { environment[$0] != nil }
        let fileKeys = configuringVariables.filter { fromFile[$0] != nil }.sorted()
        if variables.isEmpty && fileKeys.isEmpty, let embedded = embeddedServer(environment: environment) {
            return ResolvedConnection(
                settings: try ConnectionSettings(db: embedded.conninfo, environment: environment),
                source: "nothing configured: the embedded server (bin/pg) on port \(embedded.port)", embeddedPort: embedded.port)
        }
        var parts: [String] = []
        if !variables.isEmpty { parts.append(variables.joined(separator: ", ")) }
        if let envPath, !fileKeys.isEmpty { parts.append(".env found and used (\(envPath): \(fileKeys.joined(separator: ", ")))") }
        let source = parts.isEmpty ? "libpq defaults: local socket, port 5432" : "settings from " + parts.joined(separator: "; ")
        return ResolvedConnection(
            settings: try ConnectionSettings(environment: environment, envFile: envPath), source: source, embeddedPort: nil)
    }

    /// The embedded server's conninfo, when its cluster folder has a port and a password.
    static func embeddedServer(environment: [String: String]) -> (conninfo: String, port: String)? {
        let dir = environment["INGEST_PGDATA"] ?? ".pgdata"
        func read(_ name: String) -> String? {
            readSmallFile(dir + "/" + name).map { String($0.filter { !$0.isWhitespace }) }
        }
        guard let port = read("port"), !port.isEmpty, let password = read("password") else { return nil }
        let q = quoteConninfoValue
        let database = environment["INGEST_DATABASE"] ?? "ecommerce"
        return ("host=127.0.0.1 port=\(q(port)) user=postgres dbname=\(q(database)) password=\(q(password))", port)
    }

    /// libpq options that take an integer, and the range each accepts.
    static let integerOptions: [(keyword: String, variable: String, range: ClosedRange<Int>)] = [
        ("port", "PGPORT", 1...65535),
        ("connect_timeout", "PGCONNECT_TIMEOUT", 0...Int(Int32.max)),
        ("keepalives", "", 0...1),
        ("keepalives_idle", "", 0...Int(Int32.max)),
        ("keepalives_interval", "", 0...Int(Int32.max)),
        ("keepalives_count", "", 0...Int(Int32.max)),
        ("tcp_user_timeout", "", 0...Int(Int32.max)),
    ]
    static let sslModes = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

    /// `--db`: parseable, and its integer options and sslmode valid.
    static func checkConninfo(_ conninfo: String, origin: String) throws {
        let pairs: [(String, String)]
        do {
            pairs = try parse(conninfo)
        } catch {
            throw ConfigurationError(
                "\(origin): not a connection string (not shown: it may hold a password): expected keyword=value pairs or a postgresql:// URI"
            )
        }
        for (keyword, value) in pairs {
            if let option = integerOptions.first(where: { $0.keyword == keyword }) {
                try checkInteger(value, option: option, name: "\(origin): \(keyword)")
            }
            if keyword == "sslmode", !sslModes.contains(value) {
                throw ConfigurationError("\(origin): sslmode: not one of \(sslModes.joined(separator: ", ")): \"\(value)\"")
            }
        }
    }

    /// The variables and `.env` keys that libpq would only refuse when connecting.
    static func checkVariables(_ environment: [String: String], fromFile: [String: String], envPath: String?) throws {
        for option in integerOptions where !option.variable.isEmpty {
            if let value = environment[option.variable], !value.isEmpty {
                try checkInteger(value, option: option, name: option.variable)
            }
        }
        if let value = environment["PGSSLMODE"], !value.isEmpty, !sslModes.contains(value) {
            throw ConfigurationError("PGSSLMODE: not one of \(sslModes.joined(separator: ", ")): \"\(value)\"")
        }
        // POSTGRES_PORT counts only where PGPORT does not win over it.
        let port = integerOptions[0]
        guard environment["PGPORT"] == nil else { return }
        if let value = environment["POSTGRES_PORT"], !value.isEmpty {
            try checkInteger(value, option: port, name: "POSTGRES_PORT")
        } else if let value = fromFile["POSTGRES_PORT"], !value.isEmpty, let envPath {
            try checkInteger(value, option: port, name: "POSTGRES_PORT (in \(envPath))")
        }
    }

    /// A port list (`5432,5433`, empty parts allowed as libpq allows them) or a single integer.
    static func checkInteger(_ value: String, option: (keyword: String, variable: String, range: ClosedRange<Int>), name: String)
        throws
    {
        let parts = option.keyword == "port" ? value.split(separator: ",", omittingEmptySubsequences: false).map(String.init) : [value]
        for part in parts {
            let text = String(part.filter { $0 != " " && $0 != "\t" })
            if option.keyword == "port" && text.isEmpty && parts.count > 1 { continue }
            guard let number = Int(text), option.range.contains(number) else {
                let what = option.keyword == "port" ? "a port number (1-65535)" : "an integer in \(option.range)"
                throw ConfigurationError("\(name): not \(what): \"\(value)\"")
            }
        }
    }
}

/// The text of a small file (a port number, a password), nil when it cannot be read.
func readSmallFile(_ path: String) -> String? {
    (try? readFile(path, limit: 1 << 16)).map { String(decoding: $0, as: UTF8.self) }
}
