import CLibPQ
import Posix

/// A failure reported by the server or by libpq, with what a caller needs to decide what to do next.
///
/// The description never contains a connection string: libpq's own messages name the host and
/// port but not the password, and this type is never built from a conninfo.
public struct PostgresError: Error, CustomStringConvertible, Sendable {
    /// What a caller should do about an error.
    public enum Category: String, Sendable {
        /// The connection is gone or could not be made for a reason that may pass: reconnect and retry.
        case connection
        /// The data broke a rule (classes 22, 23): isolate the offending row, the rest may load.
        case data
        /// The transaction lost a race (class 40, e.g. serialization failure, deadlock), or the server
        /// ran short of a resource that comes back (53100 disk full, 53200 out of memory): retry it,
        /// after a pause.
        case retry
        /// Retrying cannot help: authentication, missing objects, privileges, syntax, and anything else.
        case permanent
    }

    /// The five-character SQLSTATE, nil when the error did not come from the server.
    public let sqlstate: String?
    /// `ERROR`, `FATAL`, `PANIC`; nil when the error did not come from the server.
    public let severity: String?
    public let message: String
    public let detail: String?
    public let hint: String?
    /// True when libpq reported the connection unusable at the time of the error,
    /// or there was no result at all: then a missing SQLSTATE means "the connection failed".
    public let connectionLost: Bool

    public init(
        sqlstate: String? = nil, severity: String? = nil, message: String,
        detail: String? = nil, hint: String? = nil, connectionLost: Bool = false
    ) {
        self.sqlstate = sqlstate
        self.severity = severity
        self.message = message
        self.detail = detail
        self.hint = hint
        self.connectionLost = connectionLost
    }

    public var category: Category {
        guard let sqlstate else {
            // No SQLSTATE: libpq itself failed (refused, reset, timed out) or we misused the API.
            return connectionLost ? .connection : .permanent
        }
        switch sqlstate {
        // Server shutting down or starting up, and too many clients: all pass with time.
        case "57P01", "57P02", "57P03", "53300": return .connection
        // The server's disk or memory ran out: an operator frees space, other sessions end.
        case "53100", "53200": return .retry
        default: break
        }
        switch sqlstate.prefix(2) {
        case "08": return .connection
        case "22", "23": return .data
        case "40": return .retry
        default: return .permanent
        }
    }

    /// One line: `ERROR 23505: duplicate key value violates unique constraint "x" (detail: …) (hint: …)`.
    public var description: String {
        var line = ""
        switch (severity, sqlstate) {
        case (let severity?, let sqlstate?): line = "\(severity) \(sqlstate): "
        case (nil, let sqlstate?): line = "\(sqlstate): "
        case (let severity?, nil): line = "\(severity): "
        case (nil, nil): break
        }
        line += oneLine(message)
        if let detail { line += " (detail: \(oneLine(detail)))" }
        if let hint { line += " (hint: \(oneLine(hint)))" }
        return line
    }
}

extension PostgresError {
    /// Builds the error from a failed result. `conn` supplies the connection status.
    init(result: OpaquePointer, connection conn: OpaquePointer?) {
        func field(_ code: Int32) -> String? {
            guard let value = PQresultErrorField(result, code) else { return nil }
            let text = String(cString: value)
            return text.isEmpty ? nil : text
        }
        let primary =
            field(CLibPQ_DIAG_MESSAGE_PRIMARY)
            ?? String(cString: PQresultErrorMessage(result))
        let bad = conn.map { PQstatus($0) != CONNECTION_OK } ?? true
        self.init(
            sqlstate: field(CLibPQ_DIAG_SQLSTATE),
            severity: field(CLibPQ_DIAG_SEVERITY),
            message: primary.isEmpty
                ? "unknown error (\(String(cString: PQresStatus(PQresultStatus(result)))))" : primary,
            detail: field(CLibPQ_DIAG_MESSAGE_DETAIL),
            hint: field(CLibPQ_DIAG_MESSAGE_HINT),
            connectionLost: bad
        )
    }

    /// Builds the error from `PQerrorMessage`, when there is no result to ask (connecting, sending).
    init(connection conn: OpaquePointer?, fallback: String = "connection failed") {
        let text = conn.flatMap { PQerrorMessage($0) }.map { String(cString: $0) } ?? ""
        let bad = conn.map { PQstatus($0) != CONNECTION_OK } ?? true
        self.init(libpqMessage: text.isEmpty ? fallback : text, connectionLost: bad)
    }

    /// Parses a libpq error message, which during connection set-up is the only place the server's
    /// error shows. With `PQERRORS_VERBOSE` it carries the SQLSTATE as
    /// `… failed: FATAL:  28P01: password authentication failed …`, which lets a wrong password or
    /// a missing database be told apart from an unreachable server.
    init(libpqMessage text: String, connectionLost: Bool) {
        var kept: [String] = []
        var detail: String?
        var hint: String?
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("LOCATION:") { continue }
            if line.hasPrefix("DETAIL:") {
                detail = String(line.dropFirst("DETAIL:".count)).trimmingWhitespace()
            } else if line.hasPrefix("HINT:") {
                hint = String(line.dropFirst("HINT:".count)).trimmingWhitespace()
            } else {
                kept.append(line)
            }
        }
        var message = kept.joined(separator: " ")
        var severity: String?
        var sqlstate: String?
        // The last server error wins: with several hosts, earlier attempts' errors come first.
        for candidate in ["FATAL", "PANIC", "ERROR"] {
            guard let range = lastRange(of: "\(candidate):  ", in: message) else { continue }
            let rest = message[range.upperBound...]
            let code = rest.prefix(5)
            if code.count == 5, code.allSatisfy({ $0.isASCII && ($0.isNumber || $0.isUppercase) }),
                rest.dropFirst(5).hasPrefix(": ")
            {
                sqlstate = String(code)
                severity = candidate
                message = String(message[..<range.lowerBound]) + String(rest.dropFirst(7))
                break
            }
        }
        self.init(
            sqlstate: sqlstate, severity: severity, message: message,
            detail: detail, hint: hint, connectionLost: connectionLost)
    }
}

private func oneLine(_ text: String) -> String {
    text.split(whereSeparator: \.isNewline).map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }
        .joined(separator: " ")
}

/// The last occurrence of `needle` in `text` (error messages are short: a plain scan will do).
func lastRange(of needle: String, in text: String) -> Range<String.Index>? {
    var found: Range<String.Index>?
    var i = text.startIndex
    while i < text.endIndex {
        if text[i...].hasPrefix(needle) { found = i..<text.index(i, offsetBy: needle.count) }
        i = text.index(after: i)
    }
    return found
}
