import Foundation

/// A network namespace of a test's own, for network faults that must never touch the machine's
/// real interfaces: only its own loopback (127.0.0.1 inside it) is up, so nothing sent in it can
/// leave it. A server started in it (``PrivateCluster/init(namespace:)``) and a client run with
/// ``command(_:)`` talk over that loopback, and the test drops their packets with nftables.
///
/// `deinit` deletes the namespace; stop whatever runs in it first (the cluster's `deinit` does).
public final class NetworkNamespace: @unchecked Sendable {
    public let name: String
    public static let ip = "/usr/sbin/ip"

    /// Fails with the command's own words when namespaces are not permitted here.
    public init() throws {
        name = "ingest-test-\(getpid())-\(String(UInt32.random(in: .min ... .max), radix: 16))"
        try Self.run([Self.ip, "netns", "add", name])
        do {
            try run(["/usr/sbin/ip", "link", "set", "lo", "up"])
        } catch {
            try? Self.run([Self.ip, "netns", "delete", name])
            throw error
        }
    }

    deinit {
        try? Self.run([Self.ip, "netns", "delete", name])
    }

    /// `arguments` prefixed so they run inside the namespace.
    public func command(_ arguments: [String]) -> [String] {
        [Self.ip, "netns", "exec", name] + arguments
    }

    /// Runs a command inside the namespace and waits for it.
    public func run(_ arguments: [String]) throws {
        try Self.run(command(arguments))
    }

    /// Drops every TCP packet to or from `port` without a reset: a server that went silent (a
    /// cable, a firewall, a dead host) rather than one that refused.
    public func blackhole(port: String) throws {
        try run(["/usr/sbin/nft", "add table inet ingest_blackhole"])
        try run(["/usr/sbin/nft", "add chain inet ingest_blackhole input { type filter hook input priority 0 ; }"])
        try run(["/usr/sbin/nft", "add rule inet ingest_blackhole input tcp dport \(port) drop"])
        try run(["/usr/sbin/nft", "add rule inet ingest_blackhole input tcp sport \(port) drop"])
    }

    /// Which packets a partition drops.
    public enum Direction: String, CaseIterable, Sendable, CustomStringConvertible {
        /// Client to server only (`dport`): a one-way partition, a firewall gone wrong.
        case toServer = "client→server"
        /// Server to client only (`sport`).
        case fromServer = "server→client"
        case both = "both ways"
        public var description: String { rawValue }
    }

    /// Drops the TCP packets of `port` going `direction`, without a reset; ``heal()`` ends it.
    public func partition(port: String, _ direction: Direction) throws {
        try run(["/usr/sbin/nft", "add table inet ingest_blackhole"])
        try run(["/usr/sbin/nft", "add chain inet ingest_blackhole input { type filter hook input priority 0 ; }"])
        if direction != .fromServer { try run(["/usr/sbin/nft", "add rule inet ingest_blackhole input tcp dport \(port) drop"]) }
        if direction != .toServer { try run(["/usr/sbin/nft", "add rule inet ingest_blackhole input tcp sport \(port) drop"]) }
    }

    /// Lets packets through again.
    public func heal() throws {
        try run(["/usr/sbin/nft", "delete table inet ingest_blackhole"])
    }

    static func run(_ arguments: [String]) throws {
        let errors = FileManager.default.temporaryDirectory.appendingPathComponent("netns-\(UUID().uuidString).err").path
        defer { try? FileManager.default.removeItem(atPath: errors) }
        let child = try SpawnedProcess(arguments, stderr: errors)
        guard child.wait(timeout: 30), child.exitCode == 0 else {
            child.signal(SIGKILL)
            let text = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
            throw TestDatabaseError("\(arguments.joined(separator: " ")): exit \(child.exitCode ?? -1): \(text)")
        }
    }
}
