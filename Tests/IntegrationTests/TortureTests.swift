import Foundation
import Generating
import Ingest
import TestSupport
import Testing

/// `watch | validate | load` as three real processes of a shell pipeline, each stage's pid kept
/// so the test can kill, stop or signal any one of them.
final class Pipeline: @unchecked Sendable {
    let shell: SpawnedProcess
    let folder: URL
    /// Prefix of the stages' pid and log files, so several pipelines can share `folder`.
    let tag: String

    init(
        /// `launcher` runs the pipeline through another command (`ip netns exec NAME`).
        folder: URL, incoming: URL, processed: URL, bad: URL, environment: [String: String], tag: String = "",
        watchArguments: [String] = [], loadArguments: [String] = [], launcher: [String] = []
    ) throws {
        self.folder = folder
        self.tag = tag
        func stage(_ name: String, _ command: [String]) -> String {
            let quoted = command.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
            return "sh -c 'echo $$ > \(folder.path)/\(tag)\(name).pid; exec \"$@\"' \(name) \(quoted) 2>>\(folder.path)/\(tag)\(name).log"
        }
        let script = [
            stage("watch", [Executables.url("watch").path, incoming.path] + watchArguments),
            stage("validate", [Executables.url("validate").path]),
            stage(
                "load",
                [
                    Executables.url("load").path, "--incoming", incoming.path, "--archive", processed.path,
                    "--bad-records", bad.path, "--batch-rows", "2000",
                ] + loadArguments),
        ].joined(separator: " | ")
        for name in ["watch", "validate", "load"] {
            try? FileManager.default.removeItem(at: folder.appendingPathComponent("\(tag)\(name).pid"))
        }
        // Close descriptors inherited from the test process, so the stages hold only their own pipes.
        shell = try SpawnedProcess(
            launcher + [
                "/bin/bash", "-c",
                #"for fd in /proc/$$/fd/*; do n=${fd##*/}; if [ "$n" -gt 2 ] 2>/dev/null; then eval "exec $n>&-" 2>/dev/null || true; fi; done; "#
                    + script + " >/dev/null",
            ],
            environment: environment)
        _ = eventually(timeout: 10) { ["watch", "validate", "load"].allSatisfy { pid($0) != nil } }
    }

    func pidFile(_ stage: String) -> URL { folder.appendingPathComponent("\(tag)\(stage).pid") }

    func pid(_ stage: String) -> Int32? {
        (try? String(contentsOf: pidFile(stage), encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    func signal(_ stage: String, _ sig: Int32) {
        if let pid = pid(stage) { kill(pid, sig) }
    }

    /// Resident memory of a stage in KiB (0 when it is not running).
    func rss(_ stage: String) -> Int {
        guard let pid = pid(stage), let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        return 0
    }

    /// Waits for the whole pipeline to exit; kills what is left after `timeout`. True when it exited by itself.
    @discardableResult
    func waitForExit(timeout: Double) -> Bool {
        let exited = shell.wait(timeout: timeout)
        if !exited {
            let alive = ["watch", "validate", "load"].filter { stage in pid(stage).map { kill($0, 0) == 0 } ?? false }
            progress("torture: pipeline still running after \(Int(timeout)) s: \(alive.joined(separator: ", ")) alive; killing")
            for stage in ["watch", "validate", "load"] { signal(stage, SIGKILL) }
            shell.wait(timeout: 10)
        }
        return exited
    }

    func log(_ stage: String) -> String {
        (try? String(contentsOf: folder.appendingPathComponent("\(tag)\(stage).log"), encoding: .utf8)) ?? ""
    }
}

/// The promise of the project, checked against ground truth: `gen` writes files continuously while
/// the pipeline runs; at random instants a random stage (or all of it) is killed with SIGKILL and
/// restarted, PostgreSQL is stopped (fast or immediate) and started, `load` is stalled so the
/// pipes fill, or a fault of ``TortureFaults`` strikes (the server goes silent, the dead-letter
/// disk fills up, `validate` is stopped). At the end every valid event is in the table exactly once, every invalid row is in
/// the dead letters exactly once, and the checkpoints agree with `gen`'s manifest.
///
/// Short by default (CI); `bin/torture --seconds N --seed S` runs it long (TORTURE_SECONDS, TORTURE_SEED).
@Suite(.serialized) struct TortureTests {
    @Test func crashesAndFaultsNeverLoseOrDoubleARow() throws {
        try torture(pipelines: 1)
    }

    /// Three pipelines share the folder (`watch --shared`), each killed at random and restarted
    /// under its name; a killed one's claims are taken over once its lease expires.
    @Test func manyPipelinesOnOneFolderNeverLoseOrDoubleARow() throws {
        try torture(pipelines: 3)
    }

    /// The same faults on another table: the wide example contract (17 columns of every type),
    /// every stage reading it from INGEST_CONTRACT, as bin/run's jobs do.
    @Test func aContractOfAnotherShapeSurvivesTheSameFaults() throws {
        try torture(pipelines: 1, contract: ContractPipelineTests.root + "/contracts/examples/shipments.yaml", defaultSeconds: 15)
    }

    func torture(pipelines count: Int, contract contractPath: String? = nil, defaultSeconds: Double? = nil) throws {
        let env = ProcessInfo.processInfo.environment
        let seconds = Double(env["TORTURE_SECONDS"] ?? "") ?? defaultSeconds ?? (count > 1 ? 20 : 25)
        let contract = try contractPath.map { try Contract.load(path: $0) } ?? Contract.ecommerceEvents
        let table = contract.table.description
        let deadLetters = contract.deadLetterTable.description
        let keyColumn = contract.columns[contract.key[0]].name
        let seed = UInt64(env["TORTURE_SEED"] ?? "") ?? UInt64.random(in: 1...999_999)
        print("torture: seed \(seed), \(Int(seconds)) s (replay with bin/torture --seed \(seed) --seconds \(Int(seconds)))")
        var rng = SplitMix64(seed: seed)

        let root = FileManager.default.temporaryDirectory.appendingPathComponent("torture-\(seed)-\(UUID().uuidString.prefix(6))")
        let incoming = root.appendingPathComponent("incoming")
        let processed = root.appendingPathComponent("processed")
        let bad = root.appendingPathComponent("bad")
        let manifest = root.appendingPathComponent("manifest.ndjson")
        for dir in [incoming, processed, bad] { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) }
        defer { try? FileManager.default.removeItem(at: root) }
        let faults = try TortureFaults(bad: bad)
        faults.longestBlackhole = min(30, seconds / 2)
        defer { faults.badDisk.unmount() }
        let cluster = try PrivateCluster(namespace: faults.namespace)
        var environment = cluster.processEnvironment()
        if let contractPath {
            environment["INGEST_CONTRACT"] = contractPath
            let tables = ContractPipelineTests.tables(contract).split(separator: ";").prefix(3).joined(separator: ";")
            _ = try cluster.psql(tables)
        }

        let gen = try SpawnedProcess(
            [
                Executables.url("gen").path, "--out", incoming.path, "--interval", "30ms", "--rows-per-file", "120",
                "--invalid-rate", "0.05", "--seed", String(seed), "--manifest", manifest.path,
            ], environment: environment)

        func start(_ n: Int) throws -> Pipeline {
            guard count > 1 else {
                return try Pipeline(
                    folder: root, incoming: incoming, processed: processed, bad: bad, environment: environment, launcher: faults.launcher)
            }
            return try Pipeline(
                folder: root, incoming: incoming, processed: processed, bad: bad, environment: environment, tag: "p\(n)-",
                watchArguments: ["--shared", "--name", "p\(n)", "--lease", "1s"], loadArguments: ["--name", "p\(n)"],
                launcher: faults.launcher)
        }
        var running = try (0..<count).map { try start($0) }
        var kills = 0
        var restarts = 0
        var serverRestarts = 0
        var stalls = 0
        var maxRSS = 0
        var events: [String] = []
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            usleep(UInt32(200_000 + rng.next() % 1_000_000))
            let victim = Int(rng.next() % UInt64(count))
            let pipeline = running[victim]
            maxRSS = max(maxRSS, running.flatMap { p in ["watch", "validate", "load"].map { p.rss($0) } }.max() ?? 0)
            // The faults of TortureFaults strike one pipeline's server and disk: drawn with one pipeline.
            switch rng.next() % (count == 1 ? 9 : 6) {
            case 0, 1, 2:
                let victims = [["watch"], ["validate"], ["load"]][Int(rng.next() % 3)]
                for v in victims { pipeline.signal(v, SIGKILL) }
                kills += 1
                events.append("kill -9 \(pipeline.tag)\(victims[0])")
            case 3:
                for v in ["watch", "validate", "load"] { pipeline.signal(v, SIGKILL) }
                kills += 1
                events.append("kill -9 \(pipeline.tag)all")
            case 4:
                let mode = rng.next() % 2 == 0 ? "fast" : "immediate"
                try cluster.stop(mode: mode)
                usleep(UInt32(300_000 + rng.next() % 1_200_000))
                try cluster.start()
                serverRestarts += 1
                events.append("postgres stop -m \(mode)")
                progress("torture: \(events.last ?? "")")
                continue
            case 6, 7, 8:
                events.append(
                    try faults.draw(&rng, pipeline: pipeline, cluster: cluster) {
                        maxRSS = max(maxRSS, running.flatMap { p in ["watch", "validate", "load"].map { p.rss($0) } }.max() ?? 0)
                    })
                progress("torture: \(events.last ?? "")")
                continue
            default:
                // Stall load: pipes fill, backpressure must keep every stage's memory flat.
                pipeline.signal("load", SIGSTOP)
                for _ in 0..<10 {
                    usleep(200_000)
                    maxRSS = max(maxRSS, running.flatMap { p in ["watch", "validate", "load"].map { p.rss($0) } }.max() ?? 0)
                }
                pipeline.signal("load", SIGCONT)
                stalls += 1
                events.append("stall load 2 s")
                continue
            }
            progress("torture: \(events.last ?? "")")
            // The surviving stages see EOF or EPIPE and exit by themselves.
            let byItself = pipeline.waitForExit(timeout: 30)
            #expect(byItself, "pipeline did not wind down after \(events.last ?? "")")
            running[victim] = try start(victim)
            restarts += 1
        }

        // Stop gen (it finishes its file), let the pipeline commit everything, then stop it the Ctrl+C way.
        gen.signal(SIGINT)
        #expect(gen.wait(timeout: 30))
        #expect(gen.exitCode == 0)
        try faults.reloadWhatRestoresLost(processed: processed, incoming: incoming)
        let drained = drainsWhileProgressing(incoming)
        #expect(drained, "files left in incoming; load log:\n\(running[0].log("load").suffix(3000))")
        for pipeline in running { pipeline.signal("watch", SIGINT) }
        for pipeline in running {
            #expect(pipeline.waitForExit(timeout: 30))
            #expect(pipeline.shell.exitCode == 0, "last pipeline exit status; load log:\n\(pipeline.log("load").suffix(2000))")
        }

        // Ground truth from gen's manifest.
        var validIDs: Set<String> = []
        var invalidTotal = 0
        var files: [(name: String, invalid: Int)] = []
        for line in try String(contentsOf: manifest, encoding: .utf8).split(separator: "\n") {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let name = try #require(object["file"] as? String)
            // The e-commerce generator lists `valid_event_ids`; a contract's, `valid_keys`.
            let ids = try #require((object["valid_event_ids"] ?? object["valid_keys"]) as? [String])
            let invalid = try #require(object["invalid"] as? Int)
            validIDs.formUnion(ids.map { $0.lowercased() })
            invalidTotal += invalid
            files.append((name, invalid))
        }
        let loadedIDs = try cluster.psql("SELECT \(keyColumn)::text FROM \(table)").split(separator: "\n").map(String.init)
        let loadedSet = Set(loadedIDs)
        let lost = validIDs.subtracting(loadedSet).count
        let unexpected = loadedSet.subtracting(validIDs).count
        let doubled = loadedIDs.count - loadedSet.count
        let badRows = Int(try cluster.psql("SELECT count(*) FROM \(deadLetters)")) ?? -1
        let badDoubled =
            Int(
                try cluster.psql(
                    "SELECT count(*) FROM (SELECT source_file, line_number FROM \(deadLetters) GROUP BY 1, 2 HAVING count(*) > 1) d")
            ) ?? -1
        let checkpoints = Int(try cluster.psql("SELECT count(*) FROM ingest_checkpoints WHERE source_file IS NOT NULL")) ?? -1
        let checkpointRows = Int(try cluster.psql("SELECT coalesce(sum(rows_loaded), 0) FROM ingest_checkpoints")) ?? -1
        var deadLetterMismatch: [String] = []
        for file in files where file.invalid > 0 {
            let text = (try? String(contentsOf: bad.appendingPathComponent(file.name + ".ndjson"), encoding: .utf8)) ?? ""
            let count = text.split(separator: "\n").count
            if count != file.invalid { deadLetterMismatch.append("\(file.name): \(count) of \(file.invalid)") }
        }

        let takeovers = running.map { $0.log("watch").components(separatedBy: "taken over from pipeline").count - 1 }.reduce(0, +)
        if count > 1 {
            print("torture: \(takeovers) claims taken over (all runs; a killed or stalled pipeline looks dead after the 1 s lease)")
        }
        print(
            """
            torture: seed \(seed), \(count) pipelines: \(kills) kills survived, \(restarts) pipeline restarts, \(serverRestarts) PostgreSQL restarts, \
            \(stalls) stalls; \(files.count) files, \(validIDs.count + invalidTotal) rows checked: \(lost) lost, \(doubled + badDoubled) doubled, \
            \(unexpected) unexpected; peak stage RSS \(maxRSS / 1024) MB; \(faults.summary(loadLog: running[0].log("load")))
            torture: events: \(events.joined(separator: ", "))
            """)
        #expect(files.count > 0)
        #expect(lost == 0)
        #expect(unexpected == 0)
        #expect(doubled == 0)
        #expect(loadedIDs.count == validIDs.count)
        #expect(badRows == invalidTotal)
        #expect(
            badDoubled == 0,
            "\((try? cluster.psql("SELECT b.source_file, b.line_number, b.checkpoint_id, b.reasons::text, c.committed_at FROM ecommerce_bad_records b LEFT JOIN ingest_checkpoints c ON c.id = b.checkpoint_id WHERE (b.source_file, b.line_number) IN (SELECT source_file, line_number FROM ecommerce_bad_records GROUP BY 1, 2 HAVING count(*) > 1)")) ?? "")"
        )
        #expect(checkpoints == files.count)
        #expect(checkpointRows == validIDs.count)
        #expect(deadLetterMismatch.isEmpty, "\(deadLetterMismatch.prefix(5))")
        #expect(maxRSS < 100 * 1024, "a stage grew to \(maxRSS / 1024) MB")
    }
}

/// A line on stderr at once, so a long run shows where it is.
func progress(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}
