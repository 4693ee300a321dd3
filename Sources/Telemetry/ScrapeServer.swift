import Logging
import Posix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The serving thread of `MetricsEndpoint`: one `poll` over the listener and every open
/// connection, each non-blocking and with a deadline, so a client that connects and sends
/// nothing (or reads nothing) delays no other scrape and is dropped when its time is up.
final class ScrapeServer {
    /// Request line and headers beyond this are refused (431): a scrape sends a few hundred bytes.
    static let maxRequestBytes = 8 * 1024
    /// Open connections at most; more wait in the listen backlog.
    static let maxConnections = 32
    /// From accept to the end of the request's headers.
    static let readTimeoutMilliseconds: Int64 = 5_000
    /// For the client to take the whole answer.
    static let writeTimeoutMilliseconds: Int64 = 10_000
    /// After the answer, for the client to close first (closing with its bytes unread would reset
    /// the connection and could lose the answer).
    static let lingerMilliseconds: Int64 = 1_000

    let listener: Int32
    let wake: Int32
    let metrics: LoadMetrics
    let logger: Logger
    private var connections: [Connection] = []
    /// accept(2) failed for want of descriptors: the listener rests until then.
    private var acceptPausedUntil: Int64 = 0

    init(listener: Int32, wake: Int32, metrics: LoadMetrics, logger: Logger) {
        self.listener = listener
        self.wake = wake
        self.metrics = metrics
        self.logger = logger
    }

    struct Connection {
        enum Phase { case reading, writing, lingering }
        let fd: Int32
        var phase = Phase.reading
        var deadline: Int64
        var request: [UInt8] = []
        var response: [UInt8] = []
        var written = 0
    }

    /// Serves until a byte arrives on `wake`; then closes every socket.
    func run() {
        defer {
            for connection in connections { close(connection.fd) }
            close(listener)
        }
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let now = monotonicMilliseconds()
            let accepting = connections.count < Self.maxConnections && now >= acceptPausedUntil
            var fds = [pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
            fds.append(pollfd(fd: accepting ? listener : -1, events: Int16(POLLIN), revents: 0))
            for connection in connections {
                let events = connection.phase == .writing ? POLLOUT : POLLIN
                fds.append(pollfd(fd: connection.fd, events: Int16(events), revents: 0))
            }
            var timeout = connections.map(\.deadline).min().map { Int32(clamping: max(0, $0 - now)) } ?? -1
            if !accepting && connections.count < Self.maxConnections {
                timeout = min(timeout < 0 ? Int32.max : timeout, Int32(clamping: max(0, acceptPausedUntil - now)))
            }
            let ready = poll(&fds, nfds_t(fds.count), timeout)
            if ready < 0 {
                if errno == EINTR { continue }
                logger.error("metrics endpoint: poll: \(String(cString: strerror(errno))); metrics off")
                return
            }
            if fds[0].revents != 0 { return }
            let after = monotonicMilliseconds()
            // Existing connections first (their slots in `fds` are 2…), from the end so removal is safe.
            for index in connections.indices.reversed() {
                let revents = fds[index + 2].revents
                if revents != 0 {
                    serve(&connections[index], revents: revents, chunk: &chunk, now: after)
                }
                if connections[index].deadline >= 0 && after >= connections[index].deadline {
                    expire(connections[index])
                    connections[index].deadline = -1
                }
                if connections[index].deadline < 0 {
                    close(connections[index].fd)
                    connections.remove(at: index)
                }
            }
            if fds[1].revents != 0 { acceptAll(now: after) }
        }
    }

    /// Accepts every waiting connection, up to the limit.
    private func acceptAll(now: Int64) {
        while connections.count < Self.maxConnections {
            let fd = accept(listener, nil, nil)
            if fd < 0 {
                switch errno {
                case EAGAIN, EWOULDBLOCK, EINTR, ECONNABORTED, EPROTO: return
                default:
                    // EMFILE and kin: the waiting connection stays in the backlog; try again shortly.
                    logger.debug("metrics endpoint: accept: \(String(cString: strerror(errno)))")
                    acceptPausedUntil = now + 100
                    return
                }
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            connections.append(Connection(fd: fd, deadline: now + Self.readTimeoutMilliseconds))
        }
    }

    /// Moves `connection` on after poll reported `revents`; a deadline of -1 means close it.
    private func serve(_ connection: inout Connection, revents: Int16, chunk: inout [UInt8], now: Int64) {
        switch connection.phase {
        case .reading:
            let n = chunk.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return }
            guard n > 0 else {
                // Closed or reset before a whole request arrived.
                connection.deadline = -1
                return
            }
            connection.request += chunk[..<n]
            if let headEnd = Self.endOfHead(connection.request), headEnd <= Self.maxRequestBytes {
                respond(&connection, HTTPRequestHead(connection.request[..<headEnd]), now: now)
            } else if connection.request.count > Self.maxRequestBytes {
                logger.trace("metrics endpoint: a request over \(Self.maxRequestBytes) bytes: 431")
                connection.request = []
                start(&connection, Self.answer(431, "Request Header Fields Too Large", "request too large\n"), now: now)
            }
        case .writing:
            write(&connection, now: now)
        case .lingering:
            let n = chunk.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return }
            if n <= 0 { connection.deadline = -1 }  // the client closed: done
        }
    }

    private func respond(_ connection: inout Connection, _ head: HTTPRequestHead?, now: Int64) {
        connection.request = []
        guard let head else {
            start(&connection, Self.answer(400, "Bad Request", "not an HTTP/1 request\n"), now: now)
            return
        }
        let response: [UInt8]
        switch head.path {
        case "/metrics", "/":
            if head.method != "GET" && head.method != "HEAD" {
                response = Self.answer(
                    405, "Method Not Allowed", "\(head.path) answers GET and HEAD\n", extraHeaders: "Allow: GET, HEAD\r\n")
            } else if head.path == "/" {
                response = Self.answer(200, "OK", "load: metrics at /metrics\n", bodyless: head.method == "HEAD")
            } else {
                response = Self.answer(
                    200, "OK", metrics.exposition(), contentType: "text/plain; version=0.0.4; charset=utf-8",
                    bodyless: head.method == "HEAD")
            }
        case "/healthz", "/readyz":
            // /healthz: the process answers (for a supervisor's liveness check). /readyz: it can
            // do its work: the database answers and waiting work moves (a load balancer's or
            // Compose's readiness check). 503 says why not.
            let reason = head.path == "/readyz" ? metrics.notReadyReason() : nil
            if head.method != "GET" && head.method != "HEAD" {
                response = Self.answer(
                    405, "Method Not Allowed", "\(head.path) answers GET and HEAD\n", extraHeaders: "Allow: GET, HEAD\r\n")
            } else if let reason {
                response = Self.answer(503, "Service Unavailable", "not ready: \(reason)\n", bodyless: head.method == "HEAD")
            } else {
                response = Self.answer(200, "OK", head.path == "/readyz" ? "ready\n" : "ok\n", bodyless: head.method == "HEAD")
            }
        default:
            response = Self.answer(404, "Not Found", "not found: \(head.path) (metrics are at /metrics)\n")
        }
        logger.trace("metrics endpoint: \(head.method) \(head.path): \(status(response)), \(response.count) bytes")
        start(&connection, response, now: now)
    }

    /// `200 OK` from a response's first line.
    private func status(_ response: [UInt8]) -> Substring {
        let line = response.prefix { $0 != UInt8(ascii: "\r") }
        return String(decoding: line, as: UTF8.self).dropFirst("HTTP/1.1 ".count)
    }

    private func start(_ connection: inout Connection, _ response: [UInt8], now: Int64) {
        connection.phase = .writing
        connection.response = response
        connection.written = 0
        connection.deadline = now + Self.writeTimeoutMilliseconds
        write(&connection, now: now)
    }

    private func write(_ connection: inout Connection, now: Int64) {
        while connection.written < connection.response.count {
            let n = connection.response.withUnsafeBytes {
                send(connection.fd, $0.baseAddress! + connection.written, $0.count - connection.written, noSignal)
            }
            if n < 0 {
                if errno == EINTR { continue }
                if errno != EAGAIN && errno != EWOULDBLOCK { connection.deadline = -1 }  // EPIPE, ECONNRESET
                return
            }
            connection.written += n
        }
        connection.response = []
        connection.phase = .lingering
        connection.deadline = now + Self.lingerMilliseconds
        shutdown(connection.fd, Int32(SHUT_WR))
    }

    private func expire(_ connection: Connection) {
        switch connection.phase {
        case .reading: logger.trace("metrics endpoint: no whole request within \(Self.readTimeoutMilliseconds) ms: closed")
        case .writing: logger.trace("metrics endpoint: the client took no answer within \(Self.writeTimeoutMilliseconds) ms: closed")
        case .lingering: break
        }
    }

    /// The index just past the blank line ending the request's headers, if it has arrived.
    static func endOfHead(_ bytes: [UInt8]) -> Int? {
        var index = 0
        while let newline = bytes[index...].firstIndex(of: UInt8(ascii: "\n")) {
            let next = newline + 1
            if next < bytes.count && bytes[next] == UInt8(ascii: "\n") { return next + 1 }
            if next + 1 < bytes.count && bytes[next] == UInt8(ascii: "\r") && bytes[next + 1] == UInt8(ascii: "\n") {
                return next + 2
            }
            index = next
        }
        return nil
    }

    /// A whole response with `Connection: close`.
    static func answer(
        _ status: Int, _ reason: String, _ body: String, contentType: String = "text/plain; charset=utf-8",
        extraHeaders: String = "", bodyless: Bool = false
    ) -> [UInt8] {
        answer(status, reason, Array(body.utf8), contentType: contentType, extraHeaders: extraHeaders, bodyless: bodyless)
    }

    static func answer(
        _ status: Int, _ reason: String, _ body: [UInt8], contentType: String = "text/plain; charset=utf-8",
        extraHeaders: String = "", bodyless: Bool = false
    ) -> [UInt8] {
        let head =
            "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n"
            + extraHeaders + "Connection: close\r\n\r\n"
        var bytes = Array(head.utf8)
        if !bodyless { bytes += body }
        return bytes
    }
}

/// What the endpoint reads of a request: its line (`GET /metrics?x=1 HTTP/1.1`), not its headers.
struct HTTPRequestHead {
    var method: String
    /// Without the query string.
    var path: String

    /// nil when the first line is not `METHOD TARGET HTTP/1.x`.
    init?(_ head: ArraySlice<UInt8>) {
        let end = head.firstIndex(of: UInt8(ascii: "\n")) ?? head.endIndex
        var line = head[..<end]
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].starts(with: "HTTP/1.".utf8), !parts[0].isEmpty, parts[1].first == UInt8(ascii: "/")
        else { return nil }
        method = String(decoding: parts[0], as: UTF8.self)
        let target = parts[1]
        path = String(decoding: target[..<(target.firstIndex(of: UInt8(ascii: "?")) ?? target.endIndex)], as: UTF8.self)
    }
}

#if canImport(Glibc)
private let noSignal = Int32(MSG_NOSIGNAL)
#else
private let noSignal: Int32 = 0
#endif
