import CLibPQ
import Posix

extension ConnectionSettings {
    /// libpq settings that bound how long a dead or silent server goes unnoticed, applied when the
    /// user set none of them.
    ///
    /// Without them a server behind a dropped route (no reset: a cable, a firewall, a dead host)
    /// keeps a blocked call waiting for the kernel's retransmission limit, about 15 minutes, with
    /// nothing in the log. With them:
    /// - `connect_timeout=10`: a connection attempt ends after 10 s;
    /// - `tcp_user_timeout=20000`: a request the server does not acknowledge within 20 s fails;
    /// - `keepalives_idle=10`, `keepalives_interval=5`, `keepalives_count=3`: an idle connection
    ///   whose server stopped answering is known dead after 25 s.
    ///
    /// A server that is alive but slow (a long COPY, a lock wait) is not affected: its kernel
    /// still acknowledges packets and answers keepalive probes.
    public static let deadServerDefaults: [(keyword: String, value: String)] = [
        ("connect_timeout", "10"),
        ("keepalives", "1"),
        ("keepalives_idle", "10"),
        ("keepalives_interval", "5"),
        ("keepalives_count", "3"),
        ("tcp_user_timeout", "20000"),
    ]

    /// `conninfo` with ``deadServerDefaults`` added for each keyword that neither the conninfo
    /// nor the keyword's libpq environment variable (`PGCONNECT_TIMEOUT`, …) sets, so whatever
    /// the user wrote wins. A `postgresql://` URI gets them as query parameters.
    public static func withDeadServerDefaults(
        _ conninfo: String, environment: [String: String] = processEnvironment()
    ) throws -> String {
        let given = Set(try parse(conninfo).map(\.0))
        let variables = libpqEnvironmentVariables()
        let missing = deadServerDefaults.filter { option in
            if given.contains(option.keyword) { return false }
            if let variable = variables[option.keyword], let value = environment[variable], !value.isEmpty {
                return false
            }
            return true
        }
        guard !missing.isEmpty else { return conninfo }
        if conninfo.hasPrefix("postgresql://") || conninfo.hasPrefix("postgres://") {
            let query = missing.map { "\($0.keyword)=\($0.value)" }.joined(separator: "&")
            return conninfo + (conninfo.contains("?") ? "&" : "?") + query
        }
        let pairs = missing.map { "\($0.keyword)=\($0.value)" }.joined(separator: " ")
        return conninfo.isEmpty ? pairs : conninfo + " " + pairs
    }

    /// libpq's keyword → environment variable table (`connect_timeout` → `PGCONNECT_TIMEOUT`).
    static func libpqEnvironmentVariables() -> [String: String] {
        guard let options = PQconndefaults() else { return [:] }
        defer { PQconninfoFree(options) }
        var variables: [String: String] = [:]
        var option = options
        while let keyword = option.pointee.keyword {
            if let variable = option.pointee.envvar {
                variables[String(cString: keyword)] = String(cString: variable)
            }
            option += 1
        }
        return variables
    }
}
