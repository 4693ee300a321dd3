import Foundation
import Postgres
import TestSupport
import Testing

/// bin/run and bin/pipeline as a service: one job per folder, bin/stop, SIGHUP, bin/status,
/// exit codes of a double Ctrl+C, the systemd unit of docs/operations.md. Each runs the scripts
/// of a project copy on the test database, as real processes.
@Suite(.serialized) struct SupervisionTests {
    /// A project copy on the test database `db`, started in the background with stderr kept.
    final class Job {
        let copy: ProjectCopy
        let env: [String: String]

        init(_ db: TestDatabase) throws {
            copy = try ProjectCopy()
            var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("INGEST_") }
            env["PGDATABASE"] = db.name
            env["INGEST_BIN_DIR"] = Executables.directory.path
            self.env = env
        }

        func start(_ script: String, _ arguments: [String] = [], extraEnvironment: [String: String] = [:])
            throws -> (SpawnedProcess, () -> String)
        {
            let log = copy.url("\(script)-\(UUID().uuidString.prefix(6)).stderr").path
            let process = try SpawnedProcess(
                [copy.url("bin/\(script)").path] + arguments, environment: env.merging(extraEnvironment) { $1 }, stderr: log)
            return (process, { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" })
        }

        func run(_ script: String, _ arguments: [String] = [], timeout: Double = 90) throws -> ToolResult {
            try runTool(copy.url("bin/\(script)"), arguments, environment: env, currentDirectory: copy.root, timeout: timeout)
        }

        func status() -> String { (try? run("status").stdout) ?? "" }

        /// Until bin/status says a job runs; then its stages are started too once `marker` is logged.
        func waitRunning(_ stderr: () -> String, marker: String) -> Bool {
            eventually(timeout: 60) { status().contains("job: running since") && stderr().contains(marker) }
        }
    }

    @Test func oneJobPerFolderStoppedByBinStop() throws {
        try TestDatabase.with { db in
            let job = try Job(db)
            let nothing = try job.run("stop")
            #expect(nothing.status == 0 && nothing.stderr.contains("no job running"), "\(nothing.stderr)")
            #expect(job.status().contains("job: not running"))

            let (pipeline, stderr) = try job.start("pipeline")
            defer { if pipeline.isRunning { pipeline.signal(SIGKILL) } }
            #expect(job.waitRunning(stderr, marker: "running (watch"), "\(stderr())")
            #expect(job.status().contains("(pid \(pipeline.pid), bin/pipeline)"), "\(job.status())")

            for (script, arguments) in [("pipeline", ["--once"]), ("run", ["--no-gen", "--drain"])] {
                let second = try job.run(script, arguments)
                #expect(second.status == 1, "bin/\(script): \(second.stderr)")
                #expect(
                    second.stderr.contains(
                        "a job is already running on \(job.copy.url("data/incoming").path) (pid \(pipeline.pid), bin/pipeline, since "),
                    "bin/\(script): \(second.stderr)")
            }

            var named = job.env
            named["INGEST_PIPELINE_NAME"] = "p2"
            let beside = try runTool(
                job.copy.url("bin/pipeline"), ["--once"], environment: named, currentDirectory: job.copy.root, timeout: 60)
            #expect(
                beside.status == 1 && beside.stderr.contains("pipeline: error: a job without a pipeline name runs on "), "\(beside.stderr)")

            let reset = try job.run("reset", ["--yes"])
            #expect(reset.status == 1 && reset.stderr.contains("stop it first with bin/stop"), "\(reset.stderr)")

            // A file arriving now is loaded before the graceful stop completes.
            try
                ("event_id,user_id,product_id,event_type,price,event_timestamp\n"
                + "\(UUID().uuidString.lowercased()),1,2,view,,2024-01-30T10:15:23Z\n")
                .write(to: job.copy.url("data/incoming/late.csv"), atomically: true, encoding: .utf8)
            #expect(eventually(timeout: 30) { job.copy.files("data/processed") == ["late.csv"] })
            let stop = try job.run("stop", ["--timeout", "60s"])
            #expect(stop.status == 0, "\(stop.stderr)")
            #expect(stop.stderr.contains("stopping the job on") && stop.stderr.contains("stop: stopped"), "\(stop.stderr)")
            #expect(pipeline.wait(timeout: 10))
            #expect(pipeline.exitCode == 0, "\(stderr())")
            #expect(stderr().contains("stopped cleanly"), "\(stderr())")
            #expect(job.status().contains("job: not running"))
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 1)
        }
    }

    /// bin/run killed (-9): gen and the pipeline stop as after a Ctrl+C, instead of living on.
    @Test func killedRunStopsTheWholeJob() throws {
        try TestDatabase.with { db in
            let job = try Job(db)
            let (run, stderr) = try job.start("run", ["--", "--interval", "200ms", "--rows-per-file", "20"])
            defer { if run.isRunning { run.signal(SIGKILL) } }
            #expect(job.waitRunning(stderr, marker: "running (watch"), "\(stderr())")
            #expect(eventually(timeout: 60) { !job.copy.files("data/processed").isEmpty })
            run.signal(SIGKILL)
            #expect(run.wait(timeout: 10))
            // Every process of the job held the lock: none is left.
            #expect(eventually(timeout: 60) { job.status().contains("job: not running") }, "\(job.status())")
            let log = (try? String(contentsOf: job.copy.url("logs/pipeline.log"), encoding: .utf8)) ?? ""
            #expect(log.contains("pipeline: stopped cleanly"), "\(log)")
            let written = job.copy.files("data/incoming").count + job.copy.files("data/processed").count
            usleep(1_000_000)  // gen would have written ~5 more files by now
            #expect(job.copy.files("data/incoming").count + job.copy.files("data/processed").count == written)
        }
    }

    /// A job whose script is gone while a process of it holds the lock: bin/status says so (never
    /// "running (pid N)" for a dead N), and bin/stop stops what lives on.
    @Test func statusAndStopWhenTheScriptIsGone() throws {
        try TestDatabase.with { db in
            let job = try Job(db)
            let gone = try SpawnedProcess(["/bin/true"])
            #expect(gone.wait(timeout: 10))
            let pidfile = job.copy.url("data/incoming/.ingest-job.pid").path
            let holder = try SpawnedProcess([
                "/bin/bash", "-c",
                "exec 9>>\(pidfile) && flock 9 && printf '%s\\n' \(gone.pid) 2026-12-01T03:00:00Z bin/run >\(pidfile) && exec sleep 300",
            ])
            defer { if holder.isRunning { holder.signal(SIGKILL) } }
            let line =
                "job: running since 2026-12-01T03:00:00Z, but bin/run (pid \(gone.pid)) is gone; its processes live on: \(holder.pid) "
            #expect(eventually(timeout: 30) { job.status().contains(line) }, "\(job.status())")
            let stop = try job.run("stop", ["--timeout", "30s"])
            #expect(stop.status == 0, "\(stop.stderr)")
            let named = "bin/run (pid \(gone.pid)) is gone; its processes live on: \(holder.pid)"
            #expect(stop.stderr.contains(named), "\(stop.stderr)")
            #expect(holder.wait(timeout: 10))
            #expect(job.status().contains("job: not running"))
        }
    }

    /// `bin/run 2>&1 | tee`, then Ctrl+C (SIGINT to the terminal's foreground group: bin/run and
    /// tee): tee ends at once; bin/run must not die of the pipe it can no longer write to. It stops
    /// the job as asked, exit 0, and its lines still reach logs/run.log.
    @Test func ctrlCThroughTeeStopsTheWholeJob() throws {
        try TestDatabase.with { db in
            let job = try Job(db)
            let tee = job.copy.url("tee.out").path
            let statuses = job.copy.url("pipestatus").path
            // setsid: a group of its own, like a terminal's foreground job; the kill below reaches all of it.
            let command = "\(job.copy.url("bin/run").path) -- --interval 200ms --rows-per-file 20 2>&1 | tee \(tee)"
            let group = try SpawnedProcess(
                ["/usr/bin/setsid", "/bin/bash", "-c", command + "; echo \"${PIPESTATUS[*]}\" >\(statuses)"], environment: job.env)
            defer { if group.isRunning { kill(-group.pid, SIGKILL) } }
            let shown = { (try? String(contentsOfFile: tee, encoding: .utf8)) ?? "" }
            #expect(job.waitRunning(shown, marker: "running (watch"), "\(shown())")
            kill(-group.pid, SIGINT)
            #expect(group.wait(timeout: 60))
            #expect((try? String(contentsOfFile: statuses, encoding: .utf8)) == "0 130\n", "the statuses of bin/run and tee")
            #expect(eventually(timeout: 30) { job.status().contains("job: not running") }, "\(job.status())")
            let runLog = (try? String(contentsOf: job.copy.url("logs/run.log"), encoding: .utf8)) ?? ""
            #expect(
                runLog.contains("run: stopping: gen and watch finish their current file") && runLog.contains("run: stopped: "), "\(runLog)")
        }
    }

    /// A closed terminal: bin/run on a pseudo-terminal of its own (script(1)), which then goes
    /// away (script killed: the kernel hangs the terminal up, SIGHUP to the session, writes to it
    /// fail). gen and every stage stop, not only bin/run; the last lines go to logs/.
    @Test func closedTerminalStopsTheWholeJob() throws {
        try TestDatabase.with { db in
            let job = try Job(db)
            let screen = job.copy.url("screen.out").path
            let command = "\(job.copy.url("bin/run").path) -- --interval 200ms --rows-per-file 20"
            let terminal = try SpawnedProcess(["/usr/bin/script", "-qfec", command, "/dev/null"], environment: job.env, stdout: screen)
            defer { if terminal.isRunning { terminal.signal(SIGKILL) } }
            let shown = { (try? String(contentsOfFile: screen, encoding: .utf8)) ?? "" }
            #expect(job.waitRunning(shown, marker: "running (watch"), "\(shown())")
            #expect(eventually(timeout: 60) { !job.copy.files("data/processed").isEmpty })
            terminal.signal(SIGKILL)
            #expect(terminal.wait(timeout: 10))
            // Every process of the job held the lock: none is left.
            #expect(eventually(timeout: 60) { job.status().contains("job: not running") }, "\(job.status())")
            let written = job.copy.files("data/incoming").count + job.copy.files("data/processed").count
            usleep(1_000_000)  // gen would have written ~5 more files by now
            #expect(job.copy.files("data/incoming").count + job.copy.files("data/processed").count == written)
            let runLog = (try? String(contentsOf: job.copy.url("logs/run.log"), encoding: .utf8)) ?? ""
            #expect(
                runLog.contains("run: stopping: gen and watch finish their current file") && runLog.contains("run: stopped: "), "\(runLog)")
            let log = (try? String(contentsOf: job.copy.url("logs/pipeline.log"), encoding: .utf8)) ?? ""
            #expect(log.contains("pipeline: stopped cleanly"), "\(log)")
        }
    }

    /// bin/pipeline alone in a closed terminal: a graceful stop, its last lines in pipeline.log.
    @Test func hangupStopsBinPipeline() throws {
        try TestDatabase.with { db in
            let job = try Job(db)
            let (pipeline, stderr) = try job.start("pipeline")
            defer { if pipeline.isRunning { pipeline.signal(SIGKILL) } }
            #expect(job.waitRunning(stderr, marker: "running (watch"), "\(stderr())")
            pipeline.signal(SIGHUP)
            #expect(pipeline.wait(timeout: 60), "bin/pipeline still running 60 s after SIGHUP")
            #expect(pipeline.exitCode == 0)
            #expect(eventually(timeout: 10) { job.status().contains("job: not running") })
            let log = (try? String(contentsOf: job.copy.url("logs/pipeline.log"), encoding: .utf8)) ?? ""
            #expect(
                log.contains("pipeline: stopping: watch finishes its current file") && log.contains("pipeline: stopped cleanly"), "\(log)")
            #expect(!stderr().contains("stopped cleanly"), "after SIGHUP nothing more goes to the closed terminal")
        }
    }

    /// Named pipelines sharing the folder are jobs of their own: a second one joins and says so,
    /// a second one under a taken name is refused.
    @Test func namedPipelinesJoinTheFolder() throws {
        try TestDatabase.with { db in
            let job = try Job(db)
            let (first, firstErr) = try job.start(
                "pipeline", extraEnvironment: ["INGEST_PIPELINE_NAME": "p1", "INGEST_METRICS_LISTEN": "off"])
            defer { if first.isRunning { first.signal(SIGKILL) } }
            #expect(eventually(timeout: 60) { firstErr().contains("running (watch") }, "\(firstErr())")
            let (second, secondErr) = try job.start(
                "pipeline", extraEnvironment: ["INGEST_PIPELINE_NAME": "p2", "INGEST_METRICS_LISTEN": "off"])
            defer { if second.isRunning { second.signal(SIGKILL) } }
            #expect(eventually(timeout: 60) { secondErr().contains("running (watch") }, "\(secondErr())")
            #expect(secondErr().contains("joining as pipeline p2: 1 other job(s) run on"), "\(secondErr())")
            var env = job.env
            env["INGEST_PIPELINE_NAME"] = "p1"
            let again = try runTool(
                job.copy.url("bin/pipeline"), ["--once"], environment: env, currentDirectory: job.copy.root, timeout: 60)
            #expect(again.status == 1 && again.stderr.contains("a job is already running"), "\(again.stderr)")
            // A job without a name beside them would read every file they claim: refused, named.
            let plain = try job.run("pipeline", ["--once"])
            #expect(
                plain.status == 1
                    && plain.stderr.contains("pipeline: error: named pipelines run on \(job.copy.url("data/incoming").path) (p1 p2)"),
                "\(plain.stderr)")
            for process in [first, second] {
                process.signal(SIGINT)
                #expect(process.wait(timeout: 60))
                #expect(process.exitCode == 0)
            }
        }
    }

    /// Ctrl+C twice: 130 and a line saying so, not "failed"; no stage status warnings.
    @Test(arguments: ["pipeline", "run"])
    func interruptedTwiceExits130(script: String) throws {
        try TestDatabase.with { db in
            let job = try Job(db)
            let arguments = script == "run" ? ["--no-gen"] : []
            let marker = script == "run" ? "running; Ctrl+C to stop" : "running (watch"
            // A file big enough to be in flight when the second signal arrives: ~7 s of work for
            // the debug builds (50,000 rows were ~5 s before issue 12 made the stages faster, and
            // then no longer in flight).
            let big = try runTool(
                Executables.url("gen"),
                [
                    "--files", "1", "--rows-per-file", "400000", "--interval", "0",
                    "--out", job.copy.url("data/incoming").path,
                ])
            #expect(big.status == 0, "\(big.stderr)")
            let (process, stderr) = try job.start(script, arguments)
            defer { if process.isRunning { process.signal(SIGKILL) } }
            // bin/run's own marker comes before its pipeline's stages run: wait for those too.
            #expect(eventually(timeout: 60) { stderr().contains(marker) && stderr().contains("running (watch") }, "\(stderr())")
            // The stages run, but watch may still be starting: a first Ctrl+C before it took the
            // file up ends the job at once, cleanly (status 0), and the second one comes too late.
            // Wait until watch has listed the file; then it is read for seconds.
            let stageLog = job.copy.url("logs/pipeline.log").path
            #expect(
                eventually(timeout: 30) { ((try? String(contentsOfFile: stageLog, encoding: .utf8)) ?? "").contains("1 files pending") },
                "\((try? String(contentsOfFile: stageLog, encoding: .utf8)) ?? "")")
            Thread.sleep(forTimeInterval: 0.5)
            process.signal(SIGINT)
            #expect(eventually(timeout: 10) { stderr().contains("stopping:") })
            process.signal(SIGINT)
            #expect(process.wait(timeout: 30))
            let log = stderr()
            #expect(process.exitCode == 130, "\(log)")
            #expect(log.contains("bin/\(script): interrupted:") || log.contains("\(script): interrupted:"), "\(log)")
            #expect(!log.contains("failed") && !log.contains("exited with status"), "\(log)")
            #expect(job.copy.files("data/incoming").count == 1, "the file in flight stays in data/incoming")
        }
    }

    /// Ctrl+C twice while the database is down: 130 and "interrupted", no shell error; the
    /// progress lines say the database does not answer instead of counting 0.
    @Test func interruptedTwiceWhileTheDatabaseIsDown() throws {
        let cluster = try PrivateCluster()
        let copy = try ProjectCopy()
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("INGEST_") && !$0.key.hasPrefix("PG") }
        env.merge(cluster.environment) { $1 }
        env["INGEST_BIN_DIR"] = Executables.directory.path
        env["INGEST_METRICS_LISTEN"] = "off"
        let log = copy.url("run.stderr").path
        let run = try SpawnedProcess([copy.url("bin/run").path, "--no-gen", "--progress-every", "1s"], environment: env, stderr: log)
        defer { if run.isRunning { run.signal(SIGKILL) } }
        let stderr = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        #expect(eventually(timeout: 60) { stderr().contains("running (watch") }, "\(stderr())")
        try cluster.stop()
        let file = try runTool(
            Executables.url("gen"), ["--files", "1", "--rows-per-file", "100", "--interval", "0", "--out", copy.url("data/incoming").path])
        #expect(file.status == 0, "\(file.stderr)")
        #expect(eventually(timeout: 60) { stderr().contains("run: the database does not answer (for ") }, "\(stderr())")
        run.signal(SIGINT)
        #expect(eventually(timeout: 10) { stderr().contains("pipeline: stopping:") })
        run.signal(SIGINT)
        #expect(run.wait(timeout: 60))
        #expect(run.exitCode == 130, "\(stderr())")
        #expect(
            stderr().contains(
                "run: interrupted: stopped at once; rows loaded by this run not known (the database does not answer); 1 files not committed stay in"
            ), "\(stderr())")
        #expect(!stderr().contains("syntax error") && !stderr().contains("failed") && !stderr().contains("loaded 0 rows"), "\(stderr())")
    }

    /// A stop that reaches gen before its handler is in place is a stop, not "status 143".
    @Test func anEarlyStopIsNotAFailure() throws {
        try TestDatabase.with { db in
            let job = try Job(db)
            for _ in 0..<2 {
                let (run, stderr) = try job.start("run", ["--", "--interval", "100ms"])
                defer { if run.isRunning { run.signal(SIGKILL) } }
                #expect(eventually(timeout: 60) { stderr().contains("running; Ctrl+C to stop") }, "\(stderr())")
                run.signal(SIGTERM)
                #expect(run.wait(timeout: 60))
                #expect(run.exitCode == 0, "\(stderr())")
                #expect(!stderr().contains("exited with status") && !stderr().contains("failed"), "\(stderr())")
            }
        }
    }

    /// A file over the threshold of `bin/pipeline -- --max-rejects N` is listed by bin/status.
    @Test func statusListsQuarantinedFiles() throws {
        try TestDatabase.with { db in
            let job = try Job(db)
            try
                ("event_id,user_id,product_id,event_type,price,event_timestamp\n"
                + "\(UUID().uuidString.lowercased()),1,2,view,,2024-01-30T10:15:23Z\n"
                + "not-a-uuid,1,2,view,,2024-01-30T10:15:23Z\n")
                .write(to: job.copy.url("data/incoming/half.csv"), atomically: true, encoding: .utf8)
            let once = try job.run("pipeline", ["--once", "--", "--max-rejects", "0"])
            #expect(once.status == 0, "\(once.stderr)")
            #expect(job.copy.files("data/quarantine") == ["half.csv", "half.csv.reason.json"])
            // One line on the terminal per quarantined file, not only in the log.
            let shown = once.stderr.components(separatedBy: "\n").filter { $0.contains("quarantined") }
            #expect(
                shown == [
                    "pipeline: warning: half.csv: quarantined: 1 of 2 rows rejected, over --max-rejects 0; moved to \(job.copy.url("data/quarantine/half.csv").path)"
                ],
                "\(once.stderr)")
            let status = job.status()
            #expect(status.contains("files quarantined: 1"), "\(status)")
            #expect(
                status.contains(
                    "quarantined files in \(job.copy.url("data/quarantine").path):\n  half.csv: 1 of 2 rows rejected, over --max-rejects 0 ("
                ),
                "\(status)")
            // Put back unchanged: refused again; bin/status keeps the first reason and adds the event.
            try FileManager.default.moveItem(at: job.copy.url("data/quarantine/half.csv"), to: job.copy.url("data/incoming/half.csv"))
            let again = try job.run("pipeline", ["--once", "--", "--max-rejects", "0"])
            #expect(again.status == 0, "\(again.stderr)")
            let history = job.status()
            #expect(history.contains("  half.csv: 1 of 2 rows rejected, over --max-rejects 0 ("), "\(history)")
            #expect(history.contains("\n    then: "), "\(history)")
        }
    }

    /// The lag counts from a file's arrival in the folder (a rename sets its ctime), not from a
    /// modification time its writer set long before.
    @Test func statusLagCountsFromArrival() throws {
        try TestDatabase.with { db in
            let job = try Job(db)
            let written = job.copy.url("old.csv")
            try "event_id,user_id,product_id,event_type,price,event_timestamp\n".write(to: written, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-3600)], ofItemAtPath: written.path)
            try FileManager.default.moveItem(at: written, to: job.copy.url("data/incoming/old.csv"))
            let status = try job.run("status", ["--json"])
            #expect(status.status == 0, "\(status.stderr)")
            let json = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any] ?? [:]
            #expect(json["files_pending"] as? Int == 1, "\(status.stdout)")
            #expect((json["oldest_pending_age_seconds"] as? Int ?? 3600) < 600, "\(status.stdout)")
            #expect(json["database_answers"] as? Bool == true, "\(status.stdout)")
        }
    }

    /// The unit in docs/operations.md, pointed at this copy, passes systemd-analyze verify.
    @Test func systemdUnitVerifies() throws {
        let copy = try ProjectCopy()
        let doc = try String(contentsOf: copy.url("docs/operations.md"), encoding: .utf8)
        guard let start = doc.range(of: "```ini\n"), let end = doc.range(of: "\n```", range: start.upperBound..<doc.endIndex) else {
            Issue.record("docs/operations.md has no ```ini block")
            return
        }
        let unit = String(doc[start.upperBound..<end.lowerBound])
            .replacingOccurrences(of: "/opt/ecommerce-ingest", with: copy.root.path)
            .replacingOccurrences(of: "User=ingest", with: "User=root")
        #expect(unit.contains("Restart=on-failure"))
        #expect(unit.contains("ExecStop=\(copy.root.path)/bin/stop"))
        let file = copy.url("ecommerce-ingest.service")
        try unit.write(to: file, atomically: true, encoding: .utf8)
        let result = try runTool(URL(fileURLWithPath: "/usr/bin/systemd-analyze"), ["verify", file.path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.isEmpty, "\(result.stderr)")
    }
}
