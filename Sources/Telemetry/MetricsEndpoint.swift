import Dispatch
import FlyingFox
import FlyingSocks
import Logging
import Synchronization

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `GET /metrics` over HTTP for a Prometheus server to scrape, served on Swift concurrency's
/// threads beside load's blocking loop (which never waits for it).
public final class MetricsEndpoint: Sendable {
    /// The address actually bound (with the port the kernel chose for port 0).
    public let host: String
    public let port: UInt16
    private let server: HTTPServer
    private let task: Task<Void, any Error>

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

    /// Binds `listen` and serves `metrics` until the process exits. Throws when the address is
    /// not `HOST:PORT` or cannot be bound (in use, not an address of this machine).
    public init(listen: String, metrics: LoadMetrics, logger: Logger) throws {
        guard let (host, port) = Self.parse(listen: listen) else {
            throw MetricsEndpointError(listen: listen, problem: "not HOST:PORT (e.g. 127.0.0.1:9187)")
        }
        let server: HTTPServer
        do {
            if host.contains(":") {
                server = HTTPServer(address: try .inet6(ip6: host, port: port), logger: EndpointLog(logger: logger))
            } else {
                server = HTTPServer(address: try .inet(ip4: host, port: port), logger: EndpointLog(logger: logger))
            }
        } catch {
            throw MetricsEndpointError(listen: listen, problem: "not an IP address: \(host)")
        }
        let route: @Sendable (HTTPRequest) async throws -> HTTPResponse = { _ in
            HTTPResponse(
                statusCode: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: Data(metrics.exposition()))
        }
        // Start and wait until listening (or failed) before load reads any input.
        let outcome = StartOutcome()
        let ready = DispatchSemaphore(value: 0)
        let task = Task {
            await server.appendRoute("GET /metrics", handler: route)
            await server.appendRoute("GET /") { _ in
                HTTPResponse(statusCode: .ok, headers: [.contentType: "text/plain"], body: Data("load: metrics at /metrics\n".utf8))
            }
            let watcher = Task {
                do {
                    try await server.waitUntilListening(timeout: 10)
                    switch await server.listeningAddress {
                    case .ip4(let h, let p)?: outcome.settle(.success((h, p)))
                    case .ip6(let h, let p)?: outcome.settle(.success((h, p)))
                    default: outcome.settle(.success((host, port)))
                    }
                } catch {
                    outcome.settle(.failure(error))
                }
                ready.signal()
            }
            do {
                try await server.run()
            } catch {
                outcome.settle(.failure(error))
                watcher.cancel()
                ready.signal()
                throw error
            }
        }
        ready.wait()
        switch outcome.result {
        case .success(let (boundHost, boundPort))?:
            self.host = boundHost
            self.port = boundPort
        case .failure(let error)?:
            task.cancel()
            throw MetricsEndpointError(listen: listen, problem: Self.describe(error))
        case nil:
            task.cancel()
            throw MetricsEndpointError(listen: listen, problem: "the server did not start")
        }
        self.server = server
        self.task = task
    }

    /// Stops listening.
    public func stop() {
        task.cancel()
    }

    private static func describe(_ error: any Error) -> String {
        if let socket = error as? SocketError, case .failed(_, let errno, let message) = socket {
            return message.isEmpty ? String(cString: strerror(errno)) : message
        }
        return "\(error)"
    }
}

/// The first word on how starting went: listening, or why not.
final class StartOutcome: Sendable {
    private let value = Mutex<Result<(String, UInt16), any Error>?>(nil)

    func settle(_ result: Result<(String, UInt16), any Error>) {
        value.withLock { $0 = $0 ?? result }
    }

    var result: Result<(String, UInt16), any Error>? { value.withLock { $0 } }
}

/// The metrics endpoint could not start.
public struct MetricsEndpointError: Error, CustomStringConvertible, Sendable {
    public let listen: String
    public let problem: String
    public var description: String { "--metrics-listen \(listen): \(problem)" }
}

/// FlyingFox's log lines, on swift-log (stderr) at debug and trace level: its default prints to
/// stdout, which carries data only.
struct EndpointLog: FlyingSocks.Logging {
    let logger: Logger
    func logDebug(_ debug: @autoclosure () -> String) { logger.trace("metrics endpoint: \(debug())") }
    func logInfo(_ info: @autoclosure () -> String) { logger.debug("metrics endpoint: \(info())") }
    func logWarning(_ warning: @autoclosure () -> String) { logger.debug("metrics endpoint: \(warning())") }
    func logError(_ error: @autoclosure () -> String) { logger.debug("metrics endpoint: \(error())") }
    // Its critical lines are start-up failures, which MetricsEndpoint reports itself, once.
    func logCritical(_ critical: @autoclosure () -> String) { logger.debug("metrics endpoint: \(critical())") }
}
