import CLibPQ
import Posix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
/// Where to connect, as libpq conventions and the project's seed-style variables say.
///
/// Precedence, highest first:
/// 1. An explicit `--db` string (a conninfo `host=… dbname=…` or a URI `postgresql://…`), passed to
///    libpq as it is. libpq fills whatever it leaves out from `PG*` variables and `~/.pgpass`;
///    the seed-style keys below are not consulted.
/// 2. `PG*` variables (`PGHOST`, `PGPORT`, `PGDATABASE`, `PGUSER`, `PGPASSWORD`, …): libpq reads
///    them itself, so they are never copied into the conninfo.
/// 3. Seed-style keys `POSTGRES_HOST`, `POSTGRES_PORT`, `POSTGRES_DB`, `POSTGRES_USER`,
///    `POSTGRES_PASSWORD`, from the process environment or else from a `.env` file, each used only
///    when its `PG*` counterpart is not set.
/// 4. libpq's defaults (local socket, the OS user name, `~/.pgpass`).
public struct ConnectionSettings: Sendable {
    /// The conninfo to hand to ``PostgresConnection/init(conninfo:)``. May contain a password:
    /// never log it; log ``redactedDescription`` instead.
    public let conninfo: String
    /// The same settings with the password left out, including what libpq will take from `PG*`.
    public let redactedDescription: String

    /// The seed-style keys and their libpq counterparts.
    static let seedKeys: [(seed: String, keyword: String, pgVariables: [String])] = [
        ("POSTGRES_HOST", "host", ["PGHOST", "PGHOSTADDR"]),
        ("POSTGRES_PORT", "port", ["PGPORT"]),
        ("POSTGRES_DB", "dbname", ["PGDATABASE"]),
        ("POSTGRES_USER", "user", ["PGUSER"]),
        ("POSTGRES_PASSWORD", "password", ["PGPASSWORD"]),
    ]

    /// - Parameters:
    ///   - db: the `--db` option, if given.
    ///   - environment: the process environment (a parameter so tests need not change the real one).
    ///   - envFile: a `.env` file of `KEY=VALUE` lines; a missing file is an error, since it was named.
    public init(
        db: String? = nil,
        environment: [String: String] = processEnvironment(),
        envFile: String? = nil
    ) throws {
        if let db, !db.isEmpty {
            conninfo = db
            let explicit = try Self.parse(db)
            redactedDescription = Self.describe(explicit, environment: environment)
            return
        }
        var fromFile: [String: String] = [:]
        if let envFile { fromFile = try Self.readEnvFile(envFile) }

        var pairs: [(String, String)] = []
        for key in Self.seedKeys where !key.pgVariables.contains(where: { environment[$0] != nil }) {
            if let value = environment[key.seed] ?? fromFile[key.seed], !value.isEmpty {
                pairs.append((key.keyword, value))
            }
        }
        conninfo = pairs.map { "\($0.0)=\(Self.quoteConninfoValue($0.1))" }.joined(separator: " ")
        redactedDescription = Self.describe(pairs, environment: environment)
    }

    /// The password a conninfo string or URI holds, as libpq reads it (nil: none, or not parseable).
    public static func password(in conninfo: String) -> String? {
        guard let pairs = try? parse(conninfo) else { return nil }
        return pairs.last { $0.0 == "password" && !$0.1.isEmpty }?.1
    }

    /// Single-quotes a conninfo value, escaping `'` and `\` with a backslash, as libpq expects.
    public static func quoteConninfoValue(_ value: String) -> String {
        var quoted = "'"
        for character in value {
            if character == "'" || character == "\\" { quoted.append("\\") }
            quoted.append(character)
        }
        return quoted + "'"
    }

    /// Reads a `.env` file by ``EnvFile``'s rules. `strict`: a line those rules would skip (not
    /// `KEY=VALUE`, a key that is not a name, a quote left open) is an error naming its line,
    /// since a typo there would otherwise send the tool to another server.
    public static func readEnvFile(_ path: String, strict: Bool = false) throws -> [String: String] {
        // Posix's readFile, not Foundation's String(contentsOfFile:): this target keeps to FoundationEssentials.
        let limit = 1 << 20
        let bytes: [UInt8]
        do {
            bytes = try readFile(path, limit: limit + 1)
        } catch let error as SystemError {
            throw PostgresError(message: "cannot read --env-file \(path): \(String(cString: strerror(error.errno)))")
        }
        guard bytes.count <= limit else { throw PostgresError(message: "cannot read --env-file \(path): larger than 1 MB") }
        let text = String(decoding: bytes, as: UTF8.self)
        if strict, let problem = EnvFile.firstProblem(text) {
            throw PostgresError(message: "\(path):\(problem.line): \(problem.message)")
        }
        return EnvFile.parse(text)
    }

    /// Keyword/value pairs of a conninfo string or URI, via libpq's own parser.
    static func parse(_ conninfo: String) throws -> [(String, String)] {
        try PostgresConnection.requireParseable(conninfo)
        guard let options = PQconninfoParse(conninfo, nil) else { return [] }
        defer { PQconninfoFree(options) }
        var pairs: [(String, String)] = []
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val {
                pairs.append((String(cString: keyword), String(cString: value)))
            }
            option += 1
        }
        return pairs
    }

    /// `host=127.0.0.1 port=5433 dbname=ecommerce user=loader`: explicit settings, then what the
    /// `PG*` variables add. Anything with "password" in its name is left out.
    static func describe(_ explicit: [(String, String)], environment: [String: String]) -> String {
        var pairs = explicit.filter { !$0.0.contains("password") }
        let fromEnvironment = [
            ("host", "PGHOST"), ("hostaddr", "PGHOSTADDR"), ("port", "PGPORT"),
            ("dbname", "PGDATABASE"), ("user", "PGUSER"), ("sslmode", "PGSSLMODE"),
        ]
        for (keyword, variable) in fromEnvironment where !explicit.contains(where: { $0.0 == keyword }) {
            if let value = environment[variable], !value.isEmpty { pairs.append((keyword, value)) }
        }
        let order = ["host", "hostaddr", "port", "dbname", "user"]
        let rank = { (keyword: String) in order.firstIndex(of: keyword) ?? order.count }
        pairs.sort { rank($0.0) < rank($1.0) }
        if pairs.isEmpty { return "(libpq defaults)" }
        return pairs.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
    }
}
