import Logging
import Posix
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `GET /metrics` over HTTP/1.1 for a Prometheus server to scrape, served by one thread of its
/// own beside load's blocking loop (which never waits for it).
///
/// Hand-written on POSIX sockets (socket, bind, listen, one thread polling the listener and every
/// open connection; `ScrapeServer`) rather than FlyingFox, which brought the whole of Foundation
/// into load (ICU, FoundationNetworking, curl). Measured with `/usr/bin/time -f %M`, release
/// build: `load --help` 27.0 MB peak RSS before, 18.9 MB after (watch: 14.6 MB); an idle load
/// connected to PostgreSQL with `--metrics-listen` 33.5 MB before, 23.4 MB after. A scrape needs
/// one request line and one answer, so this is all of it: `GET`/`HEAD` of `/metrics` and `/`,
/// 404 for other paths, 405 for other methods, `Connection: close`, requests of at most 8 KiB
/// that must arrive within 5 s.
public final class MetricsEndpoint: Sendable {
    /// The address actually bound (with the port the kernel chose for port 0).
    public let host: String
    public let port: UInt16
    /// Written to by `stop()`: wakes the serving thread, which closes everything and exits.
    private let wakeWrite: Int32
    private let wakeRead: Int32
    private let thread: JoinableThread
    private let stopped = Atomic<Bool>(false)

    /// `http://HOST:PORT/metrics`.
    public var url: String { host.contains(":") ? "http://[\(host)]:\(port)/metrics" : "http://\(host):\(port)/metrics" }

    /// Parses `HOST:PORT` (`127.0.0.1:9187`, `0.0.0.0:9187`, `[::1]:9187`, `:9187` for all
    /// IPv4 interfaces); nil when it is not one.
    public static func parse(listen: String) -> (host: String, port: UInt16)? {
        guard let colon = listen.lastIndex(of: ":"), let port = UInt16(listen[listen.index(after: colon)...]) else {
            return nil
        }
        var host = String(listen[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty { host = "0.0.0.0" }
        if host == "localhost" { host = "127.0.0.1" }
        return (host, port)
    }

    /// Binds `listen` and serves `metrics` until `stop()` or the process exits. Throws when the
    /// address is not `HOST:PORT` or cannot be bound (in use, not an address of this machine).
    public init(listen: String, metrics: LoadMetrics, logger: Logger) throws {
        guard let (host, port) = Self.parse(listen: listen) else {
            throw MetricsEndpointError(listen: listen, problem: "not HOST:PORT (e.g. 127.0.0.1:9187)")
        }
        guard var address = SocketAddress(ip: host, port: port) else {
            throw MetricsEndpointError(listen: listen, problem: "not an IP address: \(host)")
        }
        let listener: Int32
        do {
            listener = try address.openListener()
        } catch {
            throw MetricsEndpointError(listen: listen, problem: error.text)
        }
        (self.host, self.port) = address.bound(listener) ?? (host, port)

        var wake: [Int32] = [-1, -1]
        guard pipe(&wake) == 0 else {
            let problem = String(cString: strerror(errno))
            close(listener)
            throw MetricsEndpointError(listen: listen, problem: problem)
        }
        for fd in wake { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        (wakeRead, wakeWrite) = (wake[0], wake[1])

        let server = ScrapeServer(listener: listener, wake: wake[0], metrics: metrics, logger: logger)
        // Signals stay with load's own threads (its first Ctrl+C drains, the second exits): the
        // serving thread starts with all of them blocked.
        do {
            self.thread = try JoinableThread(blockingSignals: true) { server.run() }
        } catch let error as SystemError {
            close(listener)
            close(wake[0])
            close(wake[1])
            throw MetricsEndpointError(listen: listen, problem: String(cString: strerror(error.errno)))
        }
        logger.debug("metrics endpoint: listening on \(url)")
    }

    /// Stops listening, closes open connections and waits for the serving thread to end.
    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
        thread.join()
        close(wakeWrite)
        close(wakeRead)
    }

    deinit { stop() }
}

/// The metrics endpoint could not start.
public struct MetricsEndpointError: Error, CustomStringConvertible, Sendable {
    public let listen: String
    public let problem: String
    public var description: String { "--metrics-listen \(listen): \(problem)" }
}

/// An IPv4 or IPv6 address and port to listen on.
struct SocketAddress {
    private var storage = sockaddr_storage()
    private let length: socklen_t
    let family: Int32

    /// nil when `ip` is neither a dotted IPv4 address nor an IPv6 one (no host names).
    init?(ip: String, port: UInt16) {
        family = ip.contains(":") ? AF_INET6 : AF_INET
        if family == AF_INET {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = port.bigEndian
            guard inet_pton(AF_INET, ip, &a.sin_addr) == 1 else { return nil }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: a, as: sockaddr_in.self) }
        } else {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = port.bigEndian
            guard inet_pton(AF_INET6, ip, &a.sin6_addr) == 1 else { return nil }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: a, as: sockaddr_in6.self) }
        }
    }

    /// A listening, non-blocking socket bound to this address, or why not (`Address already in use`).
    mutating func openListener() throws(SocketProblem) -> Int32 {
        let fd = socket(family, socketType(SOCK_STREAM), 0)
        guard fd >= 0 else { throw SocketProblem() }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        // A restarted load can bind again while its last connections sit in TIME_WAIT; a port
        // another socket listens on still fails with EADDRINUSE.
        var on: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        let length = self.length
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0, listen(fd, 64) == 0, fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0 else {
            let problem = SocketProblem()
            close(fd)
            throw problem
        }
        return fd
    }

    /// The address and port `fd` is bound to, as text (`127.0.0.1`, `::1`).
    func bound(_ fd: Int32) -> (String, UInt16)? {
        var local = sockaddr_storage()
        var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &size) == 0 }
        }
        guard ok else { return nil }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        return withUnsafeBytes(of: &local) { raw -> (String, UInt16)? in
            if family == AF_INET {
                var a = raw.load(as: sockaddr_in.self)
                guard inet_ntop(AF_INET, &a.sin_addr, &text, socklen_t(text.count)) != nil else { return nil }
                return (String(cString: text), UInt16(bigEndian: a.sin_port))
            }
            var a = raw.load(as: sockaddr_in6.self)
            guard inet_ntop(AF_INET6, &a.sin6_addr, &text, socklen_t(text.count)) != nil else { return nil }
            return (String(cString: text), UInt16(bigEndian: a.sin6_port))
        }
    }
}

/// errno's text at the moment of a failed call.
struct SocketProblem: Error {
    let text = String(cString: strerror(errno))
}

#if canImport(Glibc)
func socketType(_ type: __socket_type) -> Int32 { Int32(type.rawValue) }
#else
func socketType(_ type: Int32) -> Int32 { type }
#endif
