import Foundation
import TestSupport
import Testing

/// Where `swift build` put the executables: next to the test bundle.
enum Executables {
    static var directory: URL {
        #if os(macOS)
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            return bundle.bundleURL.deletingLastPathComponent()
        }
        #endif
        return Bundle.main.bundleURL
    }

    static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }
}

/// Group settings that work with the mock cluster: quick joins and quick detection of a
/// consumer killed with SIGKILL.
let groupSettings = ["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500"]

/// librdkafka's mock cluster in a `kafka-mock` process: a real Kafka protocol endpoint.
/// It ends when this object stops it, or when the test process dies (its stdin closes).
final class MockKafka: @unchecked Sendable {
    let process = Process()
    private let input = Pipe()
    let bootstrap: String
    /// Runs the cluster and kcat through another command (`ip netns exec NAME`).
    let launcher: [String]

    init(topic: String = "events", partitions: Int = 3, launcher: [String] = []) throws {
        self.launcher = launcher
        let output = Pipe()
        let command = launcher + [Executables.url("kafka-mock").path, "--topic", "\(topic):\(partitions)"]
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        var line = Data()
        let handle = output.fileHandleForReading
        while !line.contains(0x0A) {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        bootstrap = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard bootstrap.hasPrefix("127.0.0.1:") else { throw TestDatabaseError("kafka-mock printed \(bootstrap.debugDescription)") }
    }

    /// Produces each line as one message with kcat (no key: spread over the partitions).
    func produce(_ text: String, topic: String = "events") throws {
        let command = launcher + ["/usr/bin/env"]
        let result = try runTool(
            URL(fileURLWithPath: command[0]),
            Array(command.dropFirst()) + [
                "kcat", "-P", "-b", bootstrap, "-t", topic, "-X", "partitioner=random", "-X", "sticky.partitioning.linger.ms=0",
            ],
            stdin: Data(text.utf8), timeout: 120)
        guard result.status == 0 else { throw TestDatabaseError("kcat -P: status \(result.status): \(result.stderr)") }
    }

    func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    func stop() {
        try? input.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// `consume | validate | load` as three real processes of a shell pipeline, each stage's pid
/// kept so a test can kill any one of them.
final class KafkaPipeline: @unchecked Sendable {
    static let stages = ["consume", "validate", "load"]
    let shell: SpawnedProcess
    let folder: URL
    let name: String

    /// `launcher` runs the pipeline through another command (`ip netns exec NAME`). With
    /// `partitions`, consume reads them without a group (`--partitions`) instead of joining `group`.
    init(
        name: String, folder: URL, brokers: String, group: String = "", partitions: String? = nil, conninfo: String, bad: URL,
        extraConsume: [String] = [], launcher: [String] = [], environment: [String: String]? = nil
    ) throws {
        self.folder = folder
        self.name = name
        func stage(_ stage: String, _ command: [String]) -> String {
            let quoted = command.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
            return
                "sh -c 'echo $$ > \(folder.path)/\(name)-\(stage).pid; exec \"$@\"' \(stage) \(quoted) 2>>\(folder.path)/\(name)-\(stage).log"
        }
        let script = [
            stage(
                "consume",
                [Executables.url("consume").path, "--brokers", brokers, "--topic", "events", "--db", conninfo]
                    + (partitions.map { ["--partitions", $0] } ?? ["--group", group] + groupSettings) + extraConsume),
            stage("validate", [Executables.url("validate").path]),
            stage("load", [Executables.url("load").path, "--db", conninfo, "--bad-records", bad.path, "--batch-rows", "2000"]),
        ].joined(separator: " | ")
        for stage in Self.stages { try? FileManager.default.removeItem(at: folder.appendingPathComponent("\(name)-\(stage).pid")) }
        // Close descriptors inherited from the test process, so the stages hold only their own pipes.
        shell = try SpawnedProcess(
            launcher + [
                "/bin/bash", "-c",
                #"for fd in /proc/$$/fd/*; do n=${fd##*/}; if [ "$n" -gt 2 ] 2>/dev/null; then eval "exec $n>&-" 2>/dev/null || true; fi; done; "#
                    + script + " >/dev/null",
            ], environment: environment)
        _ = eventually(timeout: 10) { Self.stages.allSatisfy { pid($0) != nil } }
    }

    func pidFile(_ stage: String) -> URL { folder.appendingPathComponent("\(name)-\(stage).pid") }

    func pid(_ stage: String) -> Int32? {
        (try? String(contentsOf: pidFile(stage), encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    func signal(_ stage: String, _ sig: Int32) {
        if let pid = pid(stage) { kill(pid, sig) }
    }

    /// Waits for the pipeline to exit; kills what is left after `timeout`. True when it exited by itself.
    @discardableResult
    func waitForExit(timeout: Double) -> Bool {
        let exited = shell.wait(timeout: timeout)
        if !exited {
            for stage in Self.stages { signal(stage, SIGKILL) }
            shell.wait(timeout: 10)
        }
        return exited
    }

    func log(_ stage: String) -> String {
        (try? String(contentsOf: folder.appendingPathComponent("\(name)-\(stage).log"), encoding: .utf8)) ?? ""
    }
}

/// A temporary folder removed at the end of the test.
func temporaryFolder(_ label: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// A line on stderr at once, so a long run shows where it is.
func progress(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Deterministic randomness for the torture test (replayable by seed).
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Runs of the pipeline's tools against topic `events` of a `MockKafka`, with `gen`'s truth.
enum EventsTopic {
    /// `rows` events from `gen --stdout` (3 % invalid), their truth appended to `manifest`.
    static func generate(seed: Int, rows: Int, manifest: URL) throws -> String {
        let result = try runTool(
            Executables.url("gen"),
            [
                "--stdout", "--files", "1", "--rows-per-file", String(rows), "--invalid-rate", "0.03", "--seed", String(seed),
                "--manifest", manifest.path,
            ])
        #expect(result.status == 0, "\(result.stderr)")
        return result.stdout
    }

    /// The valid event ids and the count of invalid rows over everything `manifest` records.
    static func truth(_ manifest: URL) throws -> (valid: Set<String>, invalid: Int) {
        var valid: Set<String> = []
        var invalid = 0
        for line in try String(contentsOf: manifest, encoding: .utf8).split(separator: "\n") {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            valid.formUnion(try #require(object["valid_event_ids"] as? [String]).map { $0.lowercased() })
            invalid += try #require(object["invalid"] as? Int)
        }
        return (valid, invalid)
    }

    /// `consume` alone on topic `events`, with `args`.
    static func consume(_ kafka: MockKafka, _ database: TestDatabase, _ args: [String]) throws -> ToolResult {
        try runTool(
            Executables.url("consume"), ["--brokers", kafka.bootstrap, "--topic", "events", "--db", database.conninfo] + args, timeout: 60)
    }

    /// `consume ARGS --exit-at-end | validate | load`, as three real processes.
    static func pipeline(_ kafka: MockKafka, _ database: TestDatabase, bad: URL, consume: [String]) throws -> ToolResult {
        let line =
            [
                Executables.url("consume").path, "--brokers", kafka.bootstrap, "--topic", "events", "--exit-at-end", "--db",
                database.conninfo,
            ]
            + consume
        let quoted = line.map { "'\($0)'" }.joined(separator: " ")
        return try runTool(
            URL(fileURLWithPath: "/bin/sh"),
            [
                "-c",
                "\(quoted) | '\(Executables.url("validate").path)' | '\(Executables.url("load").path)' --db '\(database.conninfo)' --bad-records '\(bad.path)'",
            ],
            timeout: 90)
    }

    static func objects(_ result: ToolResult) throws -> [[String: Any]] {
        try result.lines.map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
    }
}
