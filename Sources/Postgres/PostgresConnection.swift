import CLibPQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
/// The one owner of a libpq connection (`PGconn*`); closes it when released.
///
/// Not thread-safe: libpq allows one thread at a time per connection, so use it from one task.
/// The connection stays in libpq's blocking mode, which `copyIn` relies on.
public final class PostgresConnection {
    let conn: OpaquePointer

    /// Connects with a libpq conninfo string or URI.
    ///
    /// An empty string means libpq's defaults: `PG*` environment variables and `~/.pgpass`.
    /// Throws ``PostgresError``; its description is libpq's message on one line and never
    /// contains `conninfo` itself.
    public convenience init(conninfo: String) throws {
        try self.init(conninfo: conninfo, startup: [])
    }

    /// Connects with `conninfo`, then `startup` keyword/value pairs that override what it says
    /// (``SessionStartup/parameters(conninfo:applicationName:environment:)``: the server's
    /// keepalives and this session's `application_name`). The conninfo may be a URI: it goes in
    /// as an expanded `dbname`, so nothing is spliced into its text.
    public init(conninfo: String, startup: [(keyword: String, value: String)]) throws {
        // libpq's parse errors quote the token they stumbled on, which may be part of a password.
        try Self.requireParseable(conninfo)
        let pairs = [("dbname", conninfo)] + startup.map { ($0.keyword, $0.value) }
        let started = withCStrings(pairs.map { Optional($0.0) }) { keywords in
            withCStrings(pairs.map { Optional($0.1) }) { values in
                PQconnectStartParams(keywords + [nil], values + [nil], 1)
            }
        }
        guard let conn = started else {
            throw PostgresError(message: "out of memory while connecting", connectionLost: true)
        }
        // libpq prints notices ("relation … already exists, skipping") to stderr, which in this
        // pipeline carries diagnostics only; drop them.
        PQsetNoticeProcessor(conn, { _, _ in }, nil)
        do {
            try Self.finishConnecting(conn, poll: PQconnectPoll)
        } catch {
            PQfinish(conn)
            throw error
        }
        self.conn = conn
    }

    deinit {
        PQfinish(conn)
    }

    /// `PQserverVersion`: e.g. 150004 for 15.4, 160001 for 16.1.
    public var serverVersion: Int { Int(PQserverVersion(conn)) }

    /// True when libpq considers the connection unusable; `reset()` may bring it back.
    public var isConnectionBad: Bool { PQstatus(conn) != CONNECTION_OK }

    /// The host libpq actually connected to (for logs): a name, an address, or a socket directory.
    public var host: String { text(PQhost(conn)) }
    public var port: String { text(PQport(conn)) }
    public var databaseName: String { text(PQdb(conn)) }
    public var user: String { text(PQuser(conn)) }

    /// Where this connection went, for logs: `127.0.0.1:5433/ecommerce user=loader`. No password.
    public var endpointDescription: String { "\(host):\(port)/\(databaseName) user=\(user)" }

    /// Closes and reopens the connection with the same parameters.
    public func reset() throws {
        guard PQresetStart(conn) == 1 else { throw PostgresError(connection: conn) }
        try Self.finishConnecting(conn, poll: PQresetPoll)
    }

    /// Drives a non-blocking connection attempt to its end.
    ///
    /// libpq only reports the server's SQLSTATE during connection set-up inside the error message,
    /// and only in verbose mode, which must be set before the server answers; hence
    /// `PQconnectStart` plus polling instead of `PQconnectdb`. `connect_timeout` bounds each host's
    /// attempt as in libpq, but a timeout ends the whole attempt instead of trying the next host.
    private static func finishConnecting(
        _ conn: OpaquePointer, poll step: (OpaquePointer?) -> PostgresPollingStatusType
    ) throws {
        guard PQstatus(conn) != CONNECTION_BAD else { throw PostgresError(connection: conn) }
        let verbosity = PQsetErrorVerbosity(conn, PQERRORS_VERBOSE)
        defer { PQsetErrorVerbosity(conn, verbosity) }

        let timeout = connectTimeout(conn)
        var attemptHost = ""
        var deadline = ContinuousClock.now
        var state = PGRES_POLLING_WRITING
        while true {
            switch state {
            case PGRES_POLLING_OK:
                return
            case PGRES_POLLING_FAILED:
                throw PostgresError(connection: conn)
            default:
                break
            }
            let currentHost = "\(text(PQhost(conn))):\(text(PQport(conn)))"
            if currentHost != attemptHost {
                attemptHost = currentHost
                deadline = ContinuousClock.now + (timeout ?? .zero)
            }
            let socket = PQsocket(conn)
            guard socket >= 0 else { throw PostgresError(connection: conn) }
            var fd = pollfd(
                fd: socket,
                events: Int16(state == PGRES_POLLING_READING ? POLLIN : POLLOUT),
                revents: 0)
            var waitMilliseconds: Int32 = -1
            if let timeout, timeout > .zero {
                let left = deadline - ContinuousClock.now
                if left <= .zero {
                    throw PostgresError(
                        message: "connection to server at \(attemptHost) failed: timeout expired",
                        connectionLost: true)
                }
                let (seconds, attoseconds) = left.components
                waitMilliseconds = Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
            }
            let ready = poll(&fd, 1, waitMilliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                throw PostgresError(
                    message: "poll failed: \(String(cString: strerror(errno)))", connectionLost: true)
            }
            if ready == 0 { continue }  // The deadline check above ends the wait.
            state = step(conn)
        }
    }

    static func requireParseable(_ conninfo: String) throws {
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(conninfo, &errorMessage) else {
            PQfreemem(errorMessage)
            throw PostgresError(
                message: "invalid connection string (not shown: it may hold a password): "
                    + "expected keyword=value pairs or a postgresql:// URI")
        }
        PQconninfoFree(options)
    }

    private static func connectTimeout(_ conn: OpaquePointer) -> Duration? {
        guard let options = PQconninfo(conn) else { return nil }
        defer { PQconninfoFree(options) }
        var option = options
        while let keyword = option.pointee.keyword {
            if String(cString: keyword) == "connect_timeout", let value = option.pointee.val,
                let seconds = Int(String(cString: value)), seconds > 0
            {
                return .seconds(max(seconds, 2))  // libpq's own minimum
            }
            option += 1
        }
        return nil
    }
}

extension PostgresConnection {
    /// Runs one statement with text-format parameters `$1`, `$2`, …; nil is SQL NULL.
    ///
    /// Values reach the server only as parameters, never spliced into the SQL text, so quotes,
    /// semicolons and `$$` in values are stored as they are.
    @discardableResult
    public func execute(_ sql: String, _ params: [String?] = []) throws -> PostgresResult {
        // C strings end at NUL, so such a value would arrive cut short; PostgreSQL text cannot
        // hold NUL anyway. Report it as the server would (22021), a data error for this row.
        if let index = params.firstIndex(where: { $0?.utf8.contains(0) == true }) {
            throw PostgresError(
                sqlstate: "22021",
                message: "parameter $\(index + 1) contains a NUL byte, which text cannot hold")
        }
        let result = withCStrings(params) { values in
            PQexecParams(conn, sql, Int32(values.count), nil, values, nil, nil, 0)
        }
        return try checked(result)
    }

    /// Runs a script of several statements (the simple query protocol): for schema files
    /// such as `sql/postgres_setup.sql`. Takes no parameters; never put input values in it.
    public func executeScript(_ sql: String) throws {
        _ = try checked(PQexec(conn, sql))
    }

    func checked(_ result: OpaquePointer?) throws -> PostgresResult {
        guard let result else {
            throw PostgresError(connection: conn, fallback: "no result from server")
        }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY, PGRES_SINGLE_TUPLE:
            return PostgresResult(result)
        case PGRES_COPY_IN, PGRES_COPY_OUT, PGRES_COPY_BOTH:
            PQclear(result)
            _ = drainResults()
            throw PostgresError(message: "COPY is not run by execute: use copyIn")
        default:
            let error = PostgresError(result: result, connection: conn)
            PQclear(result)
            throw error
        }
    }

    /// Reads results until libpq has none left, so the connection is ready for the next command.
    /// Returns the first error among them.
    func drainResults() -> PostgresError? {
        var firstError: PostgresError?
        while let result = PQgetResult(conn) {
            let status = PQresultStatus(result)
            switch status {
            case PGRES_COPY_IN:
                PQclear(result)
                // libpq would hand back COPY_IN forever: end it, or stop if we cannot.
                if PQputCopyEnd(conn, "COPY abandoned by client") != 1 || isConnectionBad {
                    return firstError ?? PostgresError(connection: conn)
                }
            case PGRES_COPY_OUT:
                PQclear(result)
                var buffer: UnsafeMutablePointer<CChar>?
                while PQgetCopyData(conn, &buffer, 0) > 0 { PQfreemem(buffer) }
            case PGRES_COPY_BOTH:
                PQclear(result)
                return firstError ?? PostgresError(message: "unexpected COPY BOTH", connectionLost: true)
            case PGRES_FATAL_ERROR, PGRES_BAD_RESPONSE, PGRES_NONFATAL_ERROR:
                if firstError == nil { firstError = PostgresError(result: result, connection: conn) }
                PQclear(result)
            default:
                PQclear(result)
            }
        }
        return firstError
    }
}

private func text(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
    pointer.map { String(cString: $0) } ?? ""
}

/// Lends `strings` to C as a `const char * const *` for the duration of `body`.
private func withCStrings<R>(
    _ strings: [String?], _ body: ([UnsafePointer<CChar>?]) -> R
) -> R {
    let copies: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0)! } }
    defer { for copy in copies { free(copy) } }
    return body(copies.map { $0.map { UnsafePointer($0) } })
}
