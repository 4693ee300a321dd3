import Foundation
import TestSupport
import Testing

/// The bin/ scripts read their options through one helper (bin/lib/args.sh): an option given
/// without its value, a bad value or an unknown option is one line on stderr naming it, and
/// exit 64, before the script installs, builds or starts anything. Real processes, no cluster.
@Suite struct ScriptTests {
    /// Every option of bin/ that takes a value, given last, without it.
    static let missingValues: [(script: String, option: String)] = [
        ("bench", "--rows"), ("bench", "--files"), ("bench", "--invalid-rate"), ("bench", "--rounds"),
        ("bench", "--latency-seconds"), ("bench", "--big-file-mb"), ("bench", "--scale-rows"),
        ("bench-contract", "--contract"), ("bench-contract", "--rows"), ("bench-contract", "--files"),
        ("bench-contract", "--invalid-rate"), ("bench-contract", "--extra-null-rate"), ("bench-contract", "--rounds"),
        ("bench-contract", "--ceiling"),
        ("bench-kafka", "--messages"), ("bench-kafka", "--partitions"), ("bench-kafka", "--pipelines"),
        ("bench-shared", "--rows"), ("bench-shared", "--files"), ("bench-shared", "--pipelines"),
        ("pipeline", "--kafka"), ("pipeline", "--topic"), ("pipeline", "--group"), ("pipeline", "--partitions"),
        ("pipeline", "-X"),
        ("run", "--files"), ("run", "--for"), ("run", "--progress-every"),
        ("status", "--kafka"), ("status", "--topic"),
        ("stop", "--timeout"),
        ("torture", "--for"), ("torture", "--seconds"), ("torture", "--seed"), ("torture", "--messages"),
    ]

    /// Scripts that hand their arguments on to a tool or to `swift test`, which read them.
    static let passingOn: Set<String> = ["contract", "gen", "psql", "test", "watch-latency"]

    @Test(arguments: missingValues)
    func aMissingValueIsAOneLineUsageError(script: String, option: String) throws {
        let result = try runScript(script, [option])
        #expect(result.status == 64, "bin/\(script) \(option): \(result.stderr)")
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.hasPrefix("\(script): error: \(option) needs a value"), "\(result.stderr)")
        #expect(result.stderr.hasSuffix("; see --help\n"), "\(result.stderr)")
        #expect(result.stderr.filter { $0 == "\n" }.count == 1, "one line: \(result.stderr)")
    }

    /// The same helper reads the value: a bad one is refused the same way, naming what it got;
    /// an option (the next one) where a value belongs is a bad value, not a value.
    @Test(arguments: [
        ("bench", ["--rows", "many"], "--rows needs a whole number >= 1 (got 'many')"),
        ("bench", ["--invalid-rate", "1.5"], "--invalid-rate needs a share from 0 to 1 (got '1.5')"),
        ("bench-kafka", ["--partitions", "0"], "--partitions needs a whole number >= 1 (got '0')"),
        ("run", ["--for", "--no-gen"], "--for needs a duration: 250ms, 1.5s, 5m, 1h, a bare number is seconds (got '--no-gen')"),
        ("stop", ["--timeout", "5x"], "--timeout needs a duration: 250ms, 1.5s, 5m, 1h, a bare number is seconds (got '5x')"),
        ("status", ["--watch", "5x"], "--watch needs a duration: 250ms, 1.5s, 5m, 1h, a bare number is seconds (got '5x')"),
        ("bench-contract", ["--ceiling", "fast"], "--ceiling needs typed or text (got 'fast')"),
        ("pipeline", ["--kafka", "localhost:9092"], "--kafka and --topic go together"),
        (
            "pipeline", ["--kafka", "localhost:9092", "--topic", "t", "--group", "g", "--partitions", "all"],
            "--group and --partitions cannot be combined: a group assigns the partitions itself"
        ),
        ("pipeline", ["--partitions", "0-3"], "--group and --partitions are for --kafka"),
        ("bench-kafka", ["--pipelines", "1 two"], "--pipelines needs whole numbers"),
        ("pg", ["frobnicate"], "unknown command: frobnicate"),
    ])
    func aBadValueIsAOneLineUsageError(script: String, arguments: [String], message: String) throws {
        let result = try runScript(script, arguments)
        #expect(result.status == 64, "bin/\(script) \(arguments): \(result.stderr)")
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.hasPrefix("\(script): error: \(message)"), "\(result.stderr)")
        #expect(result.stderr.filter { $0 == "\n" }.count == 1, "one line: \(result.stderr)")
    }

    /// Every script that reads its own options, the ones without values too.
    @Test(arguments: [
        "bench", "bench-contract", "bench-kafka", "bench-shared", "lint", "pipeline", "reset", "run", "setup", "status",
        "stop", "torture",
    ])
    func anUnknownOptionIsAOneLineUsageError(script: String) throws {
        let result = try runScript(script, ["--no-such-option"])
        #expect(result.status == 64, "bin/\(script): \(result.stderr)")
        #expect(result.stdout.isEmpty)
        #expect(result.stderr == "\(script): error: unknown option: --no-such-option; see --help\n", "\(result.stderr)")
    }

    /// A new script is either listed above or hands its arguments on: none is forgotten.
    @Test func everyScriptIsCovered() throws {
        let bin = TestDatabase.packageRoot.appendingPathComponent("bin")
        let scripts = try FileManager.default.contentsOfDirectory(atPath: bin.path).filter { name in
            var isFolder: ObjCBool = false
            return FileManager.default.fileExists(atPath: bin.appendingPathComponent(name).path, isDirectory: &isFolder)
                && !isFolder.boolValue && !name.hasPrefix(".")
        }
        #expect(scripts.count > 10)
        let withValues = Set(Self.missingValues.map(\.script))
        let withoutValues: Set<String> = ["lint", "pg", "reset", "setup"]
        for script in scripts {
            #expect(
                withValues.contains(script) || withoutValues.contains(script) || Self.passingOn.contains(script),
                "bin/\(script) is not covered by ScriptTests")
        }
    }

    /// bin/SCRIPT ARGUMENTS as a real process, stdin empty, nothing configured for it to use.
    private func runScript(_ script: String, _ arguments: [String]) throws -> ToolResult {
        let environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("INGEST_") }
        return try runTool(
            TestDatabase.packageRoot.appendingPathComponent("bin/\(script)"), arguments, stdin: Data(),
            environment: environment, timeout: 60)
    }
}
