import Foundation
import Generating
import TestSupport
import Testing

/// The torture suite's faults beyond kill -9 and server restarts (issue 17), drawn at random next
/// to them: the server goes silent (its packets dropped in the test's network namespace), the
/// dead-letter disk fills up, `validate` is stopped, the server is replaced under the same address
/// (a failover to an identical copy, or a restore of an older backup, after which the test reloads
/// what the restore lost as docs/operations.md says). Kept apart from the main loop so the loop
/// can change shape without these.
final class TortureFaults: @unchecked Sendable {
    /// Where the server and the pipeline run, so the server can be silenced; nil when network
    /// namespaces are not permitted (then no blackhole is drawn, and the run says why).
    let namespace: NetworkNamespace?
    let namespaceProblem: String?
    /// The dead-letter folder, a tmpfs of its own that can be made full at once.
    let badDisk: ShrinkableDisk
    private(set) var blackholes = 0, fullDisks = 0, stoppedValidates = 0, failovers = 0, restores = 0
    /// Partitions drawn, per direction (issue 22: one way each, and both).
    private(set) var partitions: [NetworkNamespace.Direction: Int] = [:]
    private var backupTaken = false
    private(set) var detections: [Double] = []

    init(bad: URL) throws {
        do {
            namespace = try NetworkNamespace()
            namespaceProblem = nil
        } catch {
            namespace = nil
            namespaceProblem = "\(error)"
        }
        badDisk = try ShrinkableDisk(at: bad)
    }

    /// Prefix for commands that must reach the server (`ip netns exec NAME`), or none.
    var launcher: [String] { namespace?.command([]) ?? [] }

    /// Longest silence drawn: at most half the run, so a short run still has room for other faults.
    var longestBlackhole = 30.0

    func summary(loadLog: String) -> String {
        let waits = loadLog.components(separatedBy: "waiting for space").count - 1
        let ways = NetworkNamespace.Direction.allCases.map { "\(partitions[$0] ?? 0) \($0)" }.joined(separator: ", ")
        var text =
            "\(blackholes) partitions (\(ways)), \(fullDisks) full disks (load waited for space \(waits) times), \(stoppedValidates) validate stops, \(failovers) failovers, \(restores) restores of an older backup"
        if !detections.isEmpty {
            text += "; silence noticed by load after \(detections.map { String(format: "%.1f", $0) }.joined(separator: ", ")) s"
        }
        if let namespaceProblem { text += "; no blackholes: \(namespaceProblem)" }
        return text
    }

    /// Runs one fault, drawn with `rng`, and returns its name. The pipeline keeps running.
    func draw(
        _ rng: inout SplitMix64, pipeline: Pipeline, cluster: PrivateCluster, sample: () -> Void
    ) throws -> String {
        let port = cluster.environment["PGPORT"] ?? ""
        switch rng.next() % 4 {
        case 3:
            return try replaceServer(cluster: cluster, restoreBackup: rng.next() % 2 == 0)
        case 0 where namespace != nil:
            let seconds = 2 + Double(rng.next() % 1000) / 1000 * max(0, longestBlackhole - 2)
            let direction = NetworkNamespace.Direction.allCases[Int(rng.next() % 3)]
            return try blackhole(seconds: seconds, direction, pipeline: pipeline, port: port, sample: sample)
        case 0, 1:
            return try fullDisk(seconds: 0.5 + Double(rng.next() % 30) / 10, sample: sample)
        default:
            return stopValidate(seconds: 1 + Double(rng.next() % 30) / 10, pipeline: pipeline, sample: sample)
        }
    }

    /// The server's packets dropped going `direction` for `seconds`; notes when load said so.
    func blackhole(
        seconds: Double, _ direction: NetworkNamespace.Direction, pipeline: Pipeline, port: String, sample: () -> Void
    ) throws -> String {
        guard let namespace else { return "no blackhole" }
        let before = pipeline.log("load").components(separatedBy: "stopped answering").count
        try namespace.partition(port: port, direction)
        let started = Date()
        var noticed: Double?
        while Date().timeIntervalSince(started) < seconds {
            usleep(200_000)
            sample()
            if noticed == nil, pipeline.log("load").components(separatedBy: "stopped answering").count > before {
                noticed = Date().timeIntervalSince(started)
            }
        }
        try namespace.heal()
        if let noticed { detections.append(noticed) }
        blackholes += 1
        partitions[direction, default: 0] += 1
        return "partition \(direction) \(Int(seconds)) s" + (noticed.map { " (noticed after \(Int($0)) s)" } ?? "")
    }

    /// Another server takes the address: a copy of the data directory made after an immediate
    /// stop (a failover that lost nothing), or the backup taken at the first such event (a restore
    /// that loses what was committed since). The first event takes that backup.
    func replaceServer(cluster: PrivateCluster, restoreBackup: Bool) throws -> String {
        if !backupTaken {
            try cluster.stop(mode: "fast")
            try cluster.script(#"d="$(pg_cluster_dir)"; rm -rf "$d/backup"; cp -a "$d/data" "$d/backup""#)
            try cluster.start()
            backupTaken = true
            return "backup taken"
        }
        try cluster.stop(mode: "immediate")
        if restoreBackup {
            try cluster.script(#"d="$(pg_cluster_dir)"; rm -rf "$d/data"; cp -a "$d/backup" "$d/data""#)
            restores += 1
        } else {
            try cluster.script(#"d="$(pg_cluster_dir)"; mv "$d/data" "$d/old"; cp -a "$d/old" "$d/data"; rm -rf "$d/old""#)
            failovers += 1
        }
        try cluster.start()
        return restoreBackup ? "server replaced by a restore of the backup" : "server replaced by an identical copy"
    }

    /// After a restore: every archived file back into incoming, while the pipeline runs; the
    /// checkpoints on the restored server decide what loads again (docs/operations.md).
    func reloadWhatRestoresLost(processed: URL, incoming: URL) throws {
        guard restores > 0 else { return }
        for name in try FileManager.default.contentsOfDirectory(atPath: processed.path) {
            try FileManager.default.moveItem(at: processed.appendingPathComponent(name), to: incoming.appendingPathComponent(name))
        }
    }

    /// The dead-letter disk full for `seconds`.
    func fullDisk(seconds: Double, sample: () -> Void) throws -> String {
        try badDisk.makeFull()
        let started = Date()
        while Date().timeIntervalSince(started) < seconds {
            usleep(100_000)
            sample()
        }
        try badDisk.makeRoom()
        fullDisks += 1
        return String(format: "dead-letter disk full %.1f s", seconds)
    }

    /// `validate` stopped (SIGSTOP) for `seconds`: watch blocks on the pipe, load sees a quiet stream.
    func stopValidate(seconds: Double, pipeline: Pipeline, sample: () -> Void) -> String {
        pipeline.signal("validate", SIGSTOP)
        let started = Date()
        while Date().timeIntervalSince(started) < seconds {
            usleep(100_000)
            sample()
        }
        pipeline.signal("validate", SIGCONT)
        stoppedValidates += 1
        return String(format: "stop validate %.1f s", seconds)
    }
}

/// A tmpfs over a folder whose size can be cut to what it holds (full at once, without writing a
/// filler) and raised again. Unmounted on release.
final class ShrinkableDisk: @unchecked Sendable {
    let folder: URL
    static let roomy = "256m"
    private var mounted = false

    init(at folder: URL) throws {
        self.folder = folder
        try SmallDisk.run(["/usr/bin/mount", "-t", "tmpfs", "-o", "size=\(Self.roomy)", "tmpfs", folder.path])
        mounted = true
    }

    deinit { unmount() }

    func unmount() {
        guard mounted else { return }
        mounted = false
        try? SmallDisk.run(["/usr/bin/umount", "-l", folder.path])
    }

    /// No free block left: the size becomes what is in use. A writer may add a block between
    /// reading the use and the remount (which then refuses a size below it): read again, retry.
    func makeFull() throws {
        var attempt = 0
        while true {
            var fs = statvfs()
            guard statvfs(folder.path, &fs) == 0 else { throw TestDatabaseError("statvfs \(folder.path): \(errno)") }
            let used = (Int(fs.f_blocks) - Int(fs.f_bfree)) * Int(fs.f_frsize)
            do {
                try SmallDisk.run(["/usr/bin/mount", "-o", "remount,size=\(max(used, 4096))", folder.path])
                return
            } catch {
                attempt += 1
                if attempt >= 20 { throw error }
            }
        }
    }

    func makeRoom() throws {
        try SmallDisk.run(["/usr/bin/mount", "-o", "remount,size=\(Self.roomy)", folder.path])
    }
}

/// Waits until no `.csv` file is left in `incoming`, for as long as the pipeline makes progress
/// (fewer files than `stall` seconds ago): a long run with faults leaves a backlog that takes
/// longer than any fixed timeout on a busy machine, and throughput is not what the run checks.
func drainsWhileProgressing(_ incoming: URL, stall: Double = 90) -> Bool {
    func pending() -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: incoming.path)) ?? ["?.csv"]).filter { $0.hasSuffix(".csv") }.count
    }
    var fewest = pending()
    var lastProgress = Date()
    while fewest > 0 {
        if Date().timeIntervalSince(lastProgress) > stall { return false }
        usleep(200_000)
        let now = pending()
        if now < fewest {
            fewest = now
            lastProgress = Date()
        }
    }
    return true
}
