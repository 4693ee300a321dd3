import Foundation
import Ingest
import TestSupport
import Testing

/// Faults beyond kill -9 and server restarts (issue 17): a server that stops answering, a full
/// disk, a stage that stops reading, a server replaced under the same address. Each on real
/// processes and a real server; each checks that nothing is lost or doubled.
@Suite(.serialized) struct FaultTests {
    /// Packets to and from the server dropped (no reset) while load commits: load says within
    /// ~30 s that the server stopped answering, keeps retrying, and commits everything once
    /// when the network heals. Server and load run in a network namespace of the test's own.
    @Test func silentServerIsNoticedInBoundedTimeAndNothingIsLost() throws {
        let namespace = try NetworkNamespace()
        let cluster = try PrivateCluster(namespace: namespace)
        let port = try #require(cluster.environment["PGPORT"])
        let f = try LoadFixture()
        let args = ["--incoming", f.incoming.path, "--bad-records", f.bad.path, "--archive", f.processed.path]
        let run = try StreamingLoad(
            arguments: args, environment: cluster.processEnvironment(), launcher: namespace.command([]))
        try run.send(try f.file("first.csv", valid: 500, rejects: 5))
        #expect(try eventually(timeout: 60) { try cluster.psql("SELECT count(*) FROM ingest_checkpoints") == "1" })

        try namespace.blackhole(port: port)
        let silenced = Date()
        try run.send(try f.file("second.csv", valid: 500, rejects: 5))
        let noticed = eventually(timeout: 90) { run.stderr.snapshot().contains("stopped answering") }
        let detection = Date().timeIntervalSince(silenced)
        try namespace.heal()
        let line = run.stderr.snapshot().split(separator: "\n").first { $0.contains("stopped answering") } ?? ""
        print("faults: silent server noticed after \(String(format: "%.1f", detection)) s: \(line)")
        #expect(noticed, "\(run.stderr.snapshot())")
        #expect(detection < 35, "the silence was reported after \(Int(detection)) s")

        #expect(try eventually(timeout: 90) { try cluster.psql("SELECT count(*) FROM ingest_checkpoints") == "2" })
        let healed = Date().timeIntervalSince(silenced)
        print("faults: committed again \(String(format: "%.1f", healed)) s after the blackhole began")
        try run.send(try f.file("third.csv", valid: 500, rejects: 5))
        let status = run.finish()
        let log = run.stderr.text()
        #expect(status == 0, "\(log)")
        #expect(log.contains(port))
        #expect(try cluster.psql("SELECT count(*) FROM ecommerce_events") == "1500")
        #expect(try cluster.psql("SELECT count(DISTINCT event_id) FROM ecommerce_events") == "1500")
        #expect(try cluster.psql("SELECT count(*) FROM ecommerce_bad_records") == "15")
        #expect(try cluster.psql("SELECT count(*) FROM ingest_checkpoints") == "3")
    }

    /// The folder load writes dead letters to (or, with --keep, its journal) is on a file system
    /// with no space left: load logs one line naming the path and the space needed, waits, and
    /// finishes the file when space comes back; nothing lost, nothing doubled, exit 0.
    @Test(arguments: ["dead letters", "journal"])
    func fullDiskIsAWait(place: String) throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let disk = try SmallDisk(at: place == "journal" ? f.incoming : f.bad)
            defer { disk.unmount() }
            let lines = try f.file("full.csv", valid: 300, rejects: 30)
            try disk.fill()
            let run = try StreamingLoad(arguments: f.arguments(db, place == "journal" ? ["--keep"] : []))
            try run.send(lines)
            let waitedPath =
                place == "journal"
                ? f.incoming.appendingPathComponent(".ingest-committed").path : f.bad.appendingPathComponent("full.csv.ndjson").path
            #expect(
                eventually(timeout: 60) { run.stderr.snapshot().contains("\(waitedPath): No space left on device") },
                "\(run.stderr.snapshot())")
            let line = run.stderr.snapshot().split(separator: "\n").first { $0.contains("No space left") } ?? ""
            print("faults: full disk (\(place)): \(line)")
            #expect(line.contains("needed"))
            #expect(line.contains(" - load - WARNING - \(waitedPath): "), "logged under the stage, not `disk`: \(line)")
            #expect(run.process.isRunning)
            // Dead letters are written before COMMIT; the journal after it.
            #expect(try count(db, "SELECT count(*) FROM ingest_checkpoints") == (place == "journal" ? 1 : 0))

            disk.free()
            #expect(try eventually(timeout: 60) { run.stderr.snapshot().contains("space is back") }, "\(run.stderr.snapshot())")
            let status = run.finish()
            let log = run.stderr.text()
            #expect(status == 0, "\(log)")
            #expect(!log.contains("CRITICAL"))
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 300)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_bad_records") == 30)
            #expect(try count(db, "SELECT count(*) FROM ingest_checkpoints") == 1)
            #expect(try f.deadLetterLines("full.csv").count == 30)
            if place == "journal" {
                let journal = try String(contentsOf: f.incoming.appendingPathComponent(".ingest-committed"), encoding: .utf8)
                #expect(journal.split(separator: "\n").count == 1)
                #expect(journal.contains(#""file":"full.csv""#))
            }
        }
    }

    /// The spool (a file larger than load's 8 MiB memory share goes to `TMPDIR`) meets a full
    /// disk mid-write: load waits with a line naming the spool, goes on from the byte it stopped
    /// at when space is back, and every row loads once.
    @Test func fullSpoolDiskIsAWait() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let spool = f.root.appendingPathComponent("spool")
            try FileManager.default.createDirectory(at: spool, withIntermediateDirectories: true)
            let disk = try ShrinkableDisk(at: spool)
            defer { disk.unmount() }
            try disk.makeFull()
            let rows = 45_000
            let lines = try f.file("big.csv", valid: rows, rejects: 0)
            #expect(lines.reduce(0) { $0 + $1.utf8.count + 1 } > 9 << 20)
            let environment = ProcessInfo.processInfo.environment.merging(["TMPDIR": spool.path]) { $1 }
            let run = try StreamingLoad(arguments: f.arguments(db), environment: environment)
            DispatchQueue.global().async { try? run.send(lines) }
            #expect(
                eventually(timeout: 120) { run.stderr.snapshot().contains("\(spool.path)/.load-spool-XXXXXX: No space left on device") },
                "\(run.stderr.snapshot())")
            let line = run.stderr.snapshot().split(separator: "\n").first { $0.contains("No space left") } ?? ""
            print("faults: full disk (spool): \(line)")
            #expect(run.process.isRunning)
            #expect(try count(db, "SELECT count(*) FROM ingest_checkpoints") == 0)
            try disk.makeRoom()
            #expect(
                try eventually(timeout: 120) { try count(db, "SELECT count(*) FROM ingest_checkpoints") == 1 }, "\(run.stderr.snapshot())")
            let status = run.finish()
            let log = run.stderr.text()
            #expect(status == 0, "\(log)")
            #expect(log.contains("space is back"))
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == rows)
            #expect(
                try count(
                    db, "SELECT count(DISTINCT event_id) FROM ecommerce_events WHERE event_id = ANY($1::uuid[])", [arrayText(f.validIDs)])
                    == rows)
        }
    }

    /// `validate` or `load` stopped with SIGSTOP while a backlog waits: the stages upstream block
    /// on the full pipe with flat memory (peak RSS, VmHWM, well under the backlog's size), and the
    /// whole backlog loads once after SIGCONT.
    @Test(arguments: ["validate", "load"])
    func stoppedStageBlocksUpstreamWithBoundedMemory(stopped: String) throws {
        try TestDatabase.with { db in
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("stop-\(UUID().uuidString.prefix(8))")
            let incoming = root.appendingPathComponent("incoming")
            let processed = root.appendingPathComponent("processed")
            let bad = root.appendingPathComponent("bad")
            for dir in [incoming, processed, bad] { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) }
            defer { try? FileManager.default.removeItem(at: root) }
            let environment = ProcessInfo.processInfo.environment.merging(["PGDATABASE": db.name]) { $1 }
            let pipeline = try Pipeline(folder: root, incoming: incoming, processed: processed, bad: bad, environment: environment)
            let upstream = stopped == "load" ? ["watch", "validate"] : ["watch"]
            pipeline.signal(stopped, SIGSTOP)
            var resumed = false
            defer { if !resumed { pipeline.signal(stopped, SIGCONT) } }

            // A backlog larger than the memory bound below: a stage that held it would pass the bound.
            let files = 60
            let rows = 6_000
            let gen = try runTool(
                Executables.url("gen"),
                [
                    "--out", incoming.path, "--files", String(files), "--rows-per-file", String(rows), "--interval", "0",
                    "--invalid-rate", "0", "--seed", "17",
                ])
            #expect(gen.status == 0, "\(gen.stderr)")
            let backlogBytes = try FileManager.default.contentsOfDirectory(atPath: incoming.path)
                .compactMap { try FileManager.default.attributesOfItem(atPath: incoming.appendingPathComponent($0).path)[.size] as? Int }
                .reduce(0, +)

            // Upstream is blocked once it stops reading input (its read count stays put).
            var last: [Int] = []
            var still = 0
            let blocked = eventually(timeout: 120) {
                let now = upstream.map { pipeline.readBytes($0) }
                still = now == last ? still + 1 : 0
                last = now
                return still >= 40  // 2 s without a byte read
            }
            #expect(blocked, "upstream kept reading: \(last)")
            let peaks = upstream.map { pipeline.peakRSS($0) }
            let bound = 24 * 1024  // KiB; a stage blocked on the pipe peaked at ~17 MiB here
            print(
                "faults: \(stopped) stopped: backlog \(backlogBytes >> 20) MiB; peak RSS (VmHWM) \(upstream.indices.map { "\(upstream[$0]) \(peaks[$0] / 1024) MiB" }.joined(separator: ", "))"
            )
            #expect(backlogBytes > bound * 1024)
            for i in upstream.indices {
                #expect(peaks[i] > 0 && peaks[i] < bound, "\(upstream[i]) peaked at \(peaks[i]) KiB")
            }

            pipeline.signal(stopped, SIGCONT)
            resumed = true
            let drained = eventually(timeout: 300) {
                ((try? FileManager.default.contentsOfDirectory(atPath: incoming.path)) ?? ["?"]).filter { $0.hasSuffix(".csv") }.isEmpty
            }
            #expect(drained, "\(pipeline.log("load").suffix(2000))")
            pipeline.signal("watch", SIGINT)
            #expect(pipeline.waitForExit(timeout: 60))
            #expect(pipeline.shell.exitCode == 0, "\(pipeline.log("load").suffix(2000))")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == files * rows)
            #expect(try count(db, "SELECT count(DISTINCT event_id) FROM ecommerce_events") == files * rows)
            #expect(try count(db, "SELECT count(*) FROM ingest_checkpoints") == files)
        }
    }

    /// The server is replaced under the same address by one restored from an older backup: load
    /// reconnects to it and trusts its checkpoints only. Then the procedure in docs/operations.md:
    /// every archived file back into incoming, `watch --once | validate | load`: the checkpoints
    /// decide, so what the restore lost loads again and nothing doubles.
    @Test func replacedServerThenReloadWhatTheRestoreLost() throws {
        let cluster = try PrivateCluster()
        let f = try LoadFixture()
        let args = ["--incoming", f.incoming.path, "--bad-records", f.bad.path, "--archive", f.processed.path]
        let run = try StreamingLoad(arguments: args, environment: cluster.processEnvironment())
        try run.send(try f.file("a.csv", valid: 400, rejects: 4))
        #expect(try eventually(timeout: 60) { try cluster.psql("SELECT count(*) FROM ingest_checkpoints") == "1" })

        // A backup after a.csv (a copy of the stopped server's data directory).
        try cluster.stop(mode: "fast")
        try cluster.script(#"cp -a "$(pg_cluster_dir)/data" "$(pg_cluster_dir)/backup""#)
        try cluster.start()
        try run.send(try f.file("b.csv", valid: 400, rejects: 4))
        #expect(try eventually(timeout: 60) { try cluster.psql("SELECT count(*) FROM ingest_checkpoints") == "2" })

        // The server dies and a restore of the backup takes its address: b.csv is gone from it.
        try cluster.stop(mode: "immediate")
        try cluster.script(#"d="$(pg_cluster_dir)"; rm -rf "$d/data"; mv "$d/backup" "$d/data""#)
        try cluster.start()
        #expect(try cluster.psql("SELECT string_agg(source_file, ',') FROM ingest_checkpoints") == "a.csv")
        try run.send(try f.file("c.csv", valid: 400, rejects: 4))
        #expect(try eventually(timeout: 60) { try cluster.psql("SELECT count(*) FROM ingest_checkpoints") == "2" })
        let status = run.finish()
        #expect(status == 0, "\(run.stderr.text())")
        #expect(try cluster.psql("SELECT count(*) FROM ecommerce_events") == "800")

        // The operator's reload: archived files back into incoming; the checkpoints decide.
        let archived = try FileManager.default.contentsOfDirectory(atPath: f.processed.path).sorted()
        #expect(archived == ["a.csv", "b.csv", "c.csv"])
        for name in archived {
            try FileManager.default.moveItem(at: f.processed.appendingPathComponent(name), to: f.incoming.appendingPathComponent(name))
        }
        let errors = f.root.appendingPathComponent("reload.err").path
        let reload = try SpawnedProcess(
            [
                "/bin/bash", "-c", #""$1" --once "$2" | "$3" | "$4" --incoming "$2" --bad-records "$5" --archive "$6""#, "reload",
                Executables.url("watch").path, f.incoming.path, Executables.url("validate").path, Executables.url("load").path,
                f.bad.path, f.processed.path,
            ],
            environment: cluster.processEnvironment(), stderr: errors)
        #expect(reload.wait(timeout: 120))
        let reloadLog = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
        #expect(reload.exitCode == 0, "\(reloadLog)")
        #expect(reloadLog.contains("a.csv: already committed, skipped"))
        #expect(reloadLog.contains("c.csv: already committed, skipped"))
        #expect(try cluster.psql("SELECT count(*) FROM ecommerce_events") == "1200")
        #expect(try cluster.psql("SELECT count(DISTINCT event_id) FROM ecommerce_events") == "1200")
        #expect(try cluster.psql("SELECT count(*) FROM ecommerce_bad_records") == "12")
        #expect(try cluster.psql("SELECT string_agg(source_file, ',' ORDER BY source_file) FROM ingest_checkpoints") == "a.csv,b.csv,c.csv")
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.processed.path).sorted() == ["a.csv", "b.csv", "c.csv"])
    }
}

/// A 1 MiB tmpfs mounted over a test's folder (the tests run as root), to fill and free.
final class SmallDisk: @unchecked Sendable {
    let folder: URL
    private var mounted = false
    private var filler: URL { folder.appendingPathComponent(".filler") }

    init(at folder: URL) throws {
        self.folder = folder
        try Self.run(["/usr/bin/mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", folder.path])
        mounted = true
    }

    deinit { unmount() }

    func unmount() {
        guard mounted else { return }
        mounted = false
        try? Self.run(["/usr/bin/umount", "-l", folder.path])
    }

    /// Writes a file until the disk is full.
    func fill() throws {
        let fd = open(filler.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw TestDatabaseError("open \(filler.path): \(errno)") }
        defer { close(fd) }
        let block = [UInt8](repeating: 0x41, count: 4096)
        while block.withUnsafeBytes({ write(fd, $0.baseAddress!, $0.count) }) > 0 {}
        #expect(errno == ENOSPC)
    }

    func free() { try? FileManager.default.removeItem(at: filler) }

    static func run(_ arguments: [String]) throws {
        let child = try SpawnedProcess(arguments)
        guard child.wait(timeout: 30), child.exitCode == 0 else {
            throw TestDatabaseError("\(arguments.joined(separator: " ")): exit \(child.exitCode ?? -1)")
        }
    }
}

extension Pipeline {
    /// Peak resident memory of a stage in KiB (`VmHWM`; 0 when it is not running).
    func peakRSS(_ stage: String) -> Int { statusField(stage, "VmHWM:") }

    /// Bytes a stage has read so far (`rchar` of /proc/PID/io).
    func readBytes(_ stage: String) -> Int {
        guard let pid = pid(stage), let io = try? String(contentsOfFile: "/proc/\(pid)/io", encoding: .utf8) else { return -1 }
        for line in io.split(separator: "\n") where line.hasPrefix("rchar:") {
            return Int(line.split(separator: " ").last ?? "") ?? -1
        }
        return -1
    }

    func statusField(_ stage: String, _ field: String) -> Int {
        guard let pid = pid(stage), let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix(field) {
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        return 0
    }
}
