import Foundation
import Ingest
import TestSupport
import Testing

/// A folder written by writers other than `gen`, and shared by several pipelines: no file is
/// ever committed half, split into a loaded and a dead-lettered part, or loaded twice.
final class SharedFolder: @unchecked Sendable {
    let root: URL
    var incoming: URL { root.appendingPathComponent("incoming") }
    var processed: URL { root.appendingPathComponent("processed") }
    var bad: URL { root.appendingPathComponent("bad") }
    var quarantine: URL { root.appendingPathComponent("quarantine") }
    private var nextID = 0

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("shared-\(UUID().uuidString)")
        for dir in [incoming, processed, bad] { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) }
    }

    deinit { try? FileManager.default.removeItem(at: root) }

    /// `count` valid CSV rows (no header), with fresh event ids.
    func rows(_ count: Int) -> (text: String, ids: [String]) {
        var text = ""
        var ids: [String] = []
        for _ in 0..<count {
            nextID += 1
            let id = UUID().uuidString.lowercased()
            ids.append(id)
            text += "\(id),\(nextID),7,purchase,12.50,2024-01-30T10:15:23.123Z\n"
        }
        return (text, ids)
    }

    var header: String { EventField.csvHeader + "\n" }

    /// Appends with a fresh open(O_APPEND|O_CREAT) and close: a writer that closes and reopens.
    func append(_ name: String, _ text: String) throws {
        let fd = open(incoming.appendingPathComponent(name).path, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        guard fd >= 0 else { throw TestDatabaseError("open \(name): errno \(errno)") }
        defer { close(fd) }
        try writeAll(fd, text)
    }

    func writeAll(_ fd: Int32, _ text: String) throws {
        let bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
            guard n > 0 else { throw TestDatabaseError("write: errno \(errno)") }
            done += n
        }
    }

    func names(_ folder: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    /// `watch --once incoming | validate | load`, each stage's stderr kept apart.
    func once(_ db: TestDatabase, watch: [String] = [], load: [String] = []) throws -> (status: Int32, watch: String, load: String) {
        let tag = UUID().uuidString.prefix(8)
        let watchLog = root.appendingPathComponent("watch-\(tag).log").path
        let loadLog = root.appendingPathComponent("load-\(tag).log").path
        let validateLog = root.appendingPathComponent("validate-\(tag).log").path
        func quoted(_ args: [String]) -> String {
            args.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        }
        let script = """
            set -o pipefail
            \(quoted([Executables.url("watch").path, "--once", incoming.path] + watch)) 2>\(watchLog) \
            | \(quoted([Executables.url("validate").path])) 2>\(validateLog) \
            | \(quoted([Executables.url("load").path] + loadArguments(db) + load)) 2>\(loadLog)
            """
        let result = try runTool(URL(fileURLWithPath: "/bin/bash"), ["-c", script], timeout: 120)
        let w = (try? String(contentsOfFile: watchLog, encoding: .utf8)) ?? ""
        let l = (try? String(contentsOfFile: loadLog, encoding: .utf8)) ?? ""
        return (result.status, w, l)
    }

    func loadArguments(_ db: TestDatabase) -> [String] {
        [
            "--db", db.conninfo, "--incoming", incoming.path, "--archive", processed.path, "--bad-records", bad.path,
            "--quarantine", quarantine.path,
        ]
    }

    /// Every id is in the table or in a quarantined file (none lost), none twice.
    func accountedFor(_ ids: [String], _ db: TestDatabase) throws -> (missing: Int, loadedTwice: Int) {
        let loaded = try db.query("SELECT event_id::text FROM ecommerce_events").compactMap { $0[0] }
        var quarantined = ""
        for name in names(quarantine) where !name.hasSuffix(".reason.json") {
            quarantined += (try? String(contentsOf: quarantine.appendingPathComponent(name), encoding: .utf8)) ?? ""
        }
        let loadedSet = Set(loaded)
        let missing = ids.filter { !loadedSet.contains($0) && !quarantined.contains($0) }.count
        return (missing, loaded.count - loadedSet.count)
    }
}

@Suite(.serialized) struct SharedFolderTests {
    /// One file descriptor kept open, 5,000 rows written in 10 pieces under the final name;
    /// `watch --once` started after the first piece waits for the writer and loads them all.
    @Test func onceWaitsForAWriterThatKeepsTheFileOpen() throws {
        try TestDatabase.with { db in
            let f = try SharedFolder()
            let fd = open(f.incoming.appendingPathComponent("export.csv").path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            #expect(fd >= 0)
            let pieces = (0..<10).map { _ in f.rows(500) }
            try f.writeAll(fd, f.header + pieces[0].text)
            let ids = pieces.flatMap(\.ids)
            let later = pieces.dropFirst().map(\.text)
            let writer = Thread {
                for text in later {
                    usleep(300_000)
                    try? f.writeAll(fd, text)
                }
                close(fd)
            }
            writer.start()
            let run = try f.once(db)
            #expect(run.status == 0, "watch: \(run.watch)\nload: \(run.load)")
            #expect(run.watch.contains("still open for writing"), "\(run.watch)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 5_000, "load: \(run.load)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_bad_records") == 0)
            #expect(f.names(f.processed) == ["export.csv"])
            #expect(try f.accountedFor(ids, db).missing == 0)
        }
    }

    /// A writer that does not finish within --writer-wait: the file is left, with a warning,
    /// and loaded whole by the next run.
    @Test func onceLeavesAFileStillBeingWrittenForTheNextRun() throws {
        try TestDatabase.with { db in
            let f = try SharedFolder()
            let fd = open(f.incoming.appendingPathComponent("slow.csv").path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            let first = f.rows(100)
            try f.writeAll(fd, f.header + first.text)
            let run = try f.once(db, watch: ["--writer-wait", "300ms"])
            #expect(run.status == 0)
            #expect(run.watch.contains("Left \(f.incoming.path)/slow.csv for the next run"), "\(run.watch)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 0)
            #expect(f.names(f.incoming) == ["slow.csv"])

            let second = f.rows(100)
            try f.writeAll(fd, second.text)
            close(fd)
            let again = try f.once(db)
            #expect(again.status == 0)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 200, "load: \(again.load)")
            #expect(f.names(f.processed) == ["slow.csv"])
        }
    }

    /// Spark-style two-part write, the second part appended after the first was committed and
    /// archived: the header-less second file is quarantined with its reason, not dead-lettered.
    @Test func aSecondPartAfterArchivingIsQuarantinedNotDeadLettered() throws {
        try TestDatabase.with { db in
            let f = try SharedFolder()
            let one = f.rows(2_500)
            try f.append("part.csv", f.header + one.text)
            let first = try f.once(db)
            #expect(first.status == 0)
            #expect(f.names(f.processed) == ["part.csv"])

            let two = f.rows(2_500)
            try f.append("part.csv", two.text)  // the writer reopens by name: a new, header-less file
            let second = try f.once(db)
            #expect(second.status == 0, "load: \(second.load)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 2_500)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_bad_records") == 0)
            #expect(f.names(f.bad).isEmpty)
            #expect(f.names(f.incoming).isEmpty)
            #expect(f.names(f.quarantine) == ["part.csv", "part.csv.reason.json"])
            let reason = try #require(
                try JSONSerialization.jsonObject(with: Data(contentsOf: f.quarantine.appendingPathComponent("part.csv.reason.json")))
                    as? [String: Any])
            #expect(reason["file"] as? String == "part.csv")
            #expect(reason["reason"] as? String == "changed after commit")
            #expect((reason["detail"] as? String)?.contains("was committed at") == true)
            #expect(reason["at"] is String)
            #expect(second.load.contains("Not loaded: moved to"), "\(second.load)")
            #expect(try f.accountedFor(one.ids + two.ids, db).missing == 0)
        }
    }

    /// Appended after it was read, before load archived it: not archived (it is not the version
    /// committed); the grown file is then quarantined, nothing loaded twice or dead-lettered.
    @Test func aFileAppendedAfterItWasReadIsNeitherArchivedNorSplit() throws {
        try TestDatabase.with { db in
            let f = try SharedFolder()
            let one = f.rows(1_000)
            try f.append("grow.csv", f.header + one.text)
            let read = try runTool(Executables.url("watch"), ["--once", f.incoming.path])
            #expect(read.status == 0)
            let two = f.rows(1_000)
            try f.append("grow.csv", two.text)  // same inode: appended in place

            let validated = try runTool(Executables.url("validate"), [], stdin: Data(read.stdout.utf8))
            let loaded = try runTool(Executables.url("load"), f.loadArguments(db), stdin: Data(validated.stdout.utf8))
            #expect(loaded.status == 0, "\(loaded.stderr)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 1_000)
            #expect(f.names(f.incoming) == ["grow.csv"])  // changed since read: not archived
            #expect(f.names(f.processed).isEmpty)

            let again = try f.once(db)
            #expect(again.status == 0, "load: \(again.load)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 1_000)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_bad_records") == 0)
            #expect(f.names(f.quarantine) == ["grow.csv", "grow.csv.reason.json"])
            let reason = try String(contentsOf: f.quarantine.appendingPathComponent("grow.csv.reason.json"), encoding: .utf8)
            #expect(reason.contains("has grown to"), "\(reason)")
            #expect(try f.accountedFor(one.ids + two.ids, db).missing == 0)
        }
    }

    /// A file rewritten while `watch` reads it: the torn read is abandoned (load drops its rows)
    /// and the file is read again whole, in follow mode, with ten close-and-reopen appends.
    @Test func closeAndReopenAppendsInFollowModeAreNeverSplit() throws {
        try TestDatabase.with { db in
            let f = try SharedFolder()
            let pipeline = try Pipeline(
                folder: f.root, incoming: f.incoming, processed: f.processed, bad: f.bad, environment: ProcessInfo.processInfo.environment,
                loadArguments: ["--db", db.conninfo, "--quarantine", f.quarantine.path])
            var ids: [String] = []
            for i in 0..<10 {
                let piece = f.rows(500)
                ids += piece.ids
                try f.append("appends.csv", (i == 0 ? f.header : "") + piece.text)
                usleep(300_000)
            }
            // Settled: nothing left in incoming (each piece loaded, quarantined or both).
            let settled = eventually(timeout: 60) { f.names(f.incoming).isEmpty }
            pipeline.signal("watch", SIGINT)
            #expect(pipeline.waitForExit(timeout: 60))
            #expect(pipeline.shell.exitCode == 0, "load: \(pipeline.log("load"))")
            #expect(settled, "left in incoming: \(f.names(f.incoming)); load: \(pipeline.log("load"))")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_bad_records") == 0, "load: \(pipeline.log("load"))")
            #expect(f.names(f.bad).isEmpty)
            #expect(try f.accountedFor(ids, db).missing == 0)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") >= 500)
        }
    }

    /// The lines of a torn read, then `abandon`, then the whole file: `validate | load` commit
    /// the file once, its rows neither doubled nor taken for duplicates.
    @Test func anAbandonedReadIsDroppedAndTheWholeFileLoadsOnce() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let whole = try f.file("torn.csv", valid: 40, rejects: 2)
            let torn = Array(whole.prefix(25))
            let abandon = #"{"kind":"abandon","file":"torn.csv","reason":"changed while being read"}"#
            let validated = try runTool(Executables.url("validate"), [], stdin: stdinData(torn + [abandon] + whole))
            #expect(validated.status == 0)
            let loaded = try runTool(Executables.url("load"), f.arguments(db), stdin: Data(validated.stdout.utf8))
            #expect(loaded.status == 0, "\(loaded.stderr)")
            #expect(loaded.stderr.contains("torn.csv: the reader abandoned it (it changed while being read); 25 rows dropped"))
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 40)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_bad_records") == 2)
            #expect(try count(db, "SELECT rows_loaded FROM ingest_checkpoints WHERE source_file = 'torn.csv'") == 40)
        }
    }

    /// Two versions of one name in one stream (read, appended to, read again before the first
    /// commit): the first is loaded, the second is judged against it and quarantined, never
    /// loaded into the same batch with its repeated rows dead-lettered.
    @Test func twoVersionsOfANameInOneStreamAreNeverSplit() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let first = try f.file("twice.csv", valid: 30, rejects: 0)
            let path = f.incoming.appendingPathComponent("twice.csv").path
            var more = ""
            var extra: [String] = []
            for n in 0..<20 {
                let id = UUID().uuidString.lowercased()
                more += "\(id),\(100 + n),7,purchase,12.50,2024-01-30T10:15:23.123Z\n"
                extra.append(
                    #"{"kind":"record","file":"twice.csv","line":\#(32 + n),"event_id":"\#(id)","user_id":\#(100 + n),"product_id":7,"event_type":"purchase","price":"12.50","event_timestamp":"2024-01-30T10:15:23.123Z"}"#
                )
            }
            let handle = try #require(FileHandle(forWritingAtPath: path))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(more.utf8))
            try handle.close()
            let digest = try FileDigest.of(path: path)
            let second =
                Array(first.dropLast()) + extra + [
                    #"{"kind":"eof","file":"twice.csv","rows":50,"bytes":\#(digest.bytes),"sha256":"\#(digest.sha256)"}"#
                ]
            let loaded = try runTool(
                Executables.url("load"), f.arguments(db, ["--quarantine", f.root.appendingPathComponent("quarantine").path]),
                stdin: stdinData(first + second))
            #expect(loaded.status == 0, "\(loaded.stderr)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 30, "\(loaded.stderr)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_bad_records") == 0, "\(loaded.stderr)")
            #expect(loaded.stderr.contains("30 of its first rows are already loaded"), "\(loaded.stderr)")
            let quarantined = try FileManager.default.contentsOfDirectory(atPath: f.root.appendingPathComponent("quarantine").path)
            #expect(quarantined.sorted() == ["twice.csv", "twice.csv.reason.json"])
        }
    }

    /// Two `load`s given the same file at the same instant: one commits it, the other skips it
    /// as already committed; neither dies on the checkpoint's unique key.
    @Test func twoLoadsOfTheSameFileNeitherDies() throws {
        try TestDatabase.with { db in
            let f = try SharedFolder()
            let rows = f.rows(3_000)
            try f.append("same.csv", f.header + rows.text + "x,y\n")
            let read = try runTool(Executables.url("watch"), ["--once", f.incoming.path])
            let input = Data(read.stdout.utf8)
            let group = DispatchGroup()
            let results = Results()
            for n in 0..<2 {
                group.enter()
                DispatchQueue.global().async {
                    let r = try? runTool(Executables.url("load"), f.loadArguments(db) + ["--keep", "--name", "L\(n)"], stdin: input)
                    results.add(r)
                    group.leave()
                }
            }
            group.wait()
            let both = results.all
            #expect(both.count == 2)
            for r in both { #expect(r.status == 0, "\(r.stderr)") }
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 3_000)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_bad_records") == 1)
            #expect(try count(db, "SELECT count(*) FROM ingest_checkpoints WHERE source_file = 'same.csv'") == 1)
            #expect(try count(db, "SELECT count(*) FROM ingest_checkpoints WHERE pipeline IN ('L0', 'L1')") == 1)
            #expect(both.filter { $0.stderr.contains("1 skipped as already committed") }.count == 1)
        }
    }

    /// Two pipelines following one folder split 60 files: both commit some, none is read twice
    /// (0 skipped as already committed in both loads' final lines), each checkpoint names its
    /// pipeline.
    @Test func twoPipelinesSplitTheFilesOfOneFolder() throws {
        try TestDatabase.with { db in
            let f = try SharedFolder()
            let pipelines = try ["A", "B"].map { name in
                try Pipeline(
                    folder: f.root, incoming: f.incoming, processed: f.processed, bad: f.bad,
                    environment: ProcessInfo.processInfo.environment, tag: "\(name)-",
                    watchArguments: ["--shared", "--name", name], loadArguments: ["--db", db.conninfo, "--name", name])
            }
            // Both are following before the files arrive (renamed in, as gen does).
            #expect(eventually(timeout: 30) { pipelines.allSatisfy { $0.log("watch").contains("Watching") } })
            var ids: [String] = []
            for i in 0..<60 {
                let rows = f.rows(200)
                ids += rows.ids
                let temporary = f.incoming.appendingPathComponent(".f\(i).csv.tmp")
                try Data((f.header + rows.text).utf8).write(to: temporary)
                #expect(rename(temporary.path, f.incoming.appendingPathComponent(String(format: "f%02d.csv", i)).path) == 0)
            }
            let drained = eventually(timeout: 120) {
                (try? count(db, "SELECT count(*) FROM ingest_checkpoints WHERE source_file IS NOT NULL")) == 60
            }
            for p in pipelines { p.signal("watch", SIGINT) }
            for p in pipelines {
                #expect(p.waitForExit(timeout: 60))
                #expect(p.shell.exitCode == 0, "\(p.log("load"))")
            }
            #expect(drained)
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 12_000)
            #expect(try count(db, "SELECT count(DISTINCT pipeline) FROM ingest_checkpoints WHERE source_file IS NOT NULL") == 2)
            #expect(try count(db, "SELECT count(*) FROM ingest_checkpoints WHERE pipeline NOT IN ('A', 'B')") == 0)
            var skipped = 0
            for p in pipelines {
                let log = p.log("load")
                let final = try #require(log.split(separator: "\n").last { $0.contains(" - load - INFO - done:") })
                let number = final.components(separatedBy: " skipped as already committed").first?.split(separator: " ").last
                skipped += Int(number ?? "") ?? 999
            }
            #expect(skipped == 0)
            #expect(f.names(f.incoming).isEmpty)
            #expect(f.names(f.processed).count == 60)
            #expect(try f.accountedFor(ids, db).missing == 0)
        }
    }
}

/// Tool results gathered from several threads.
final class Results: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [ToolResult] = []
    func add(_ r: ToolResult?) {
        guard let r else { return }
        lock.lock()
        items.append(r)
        lock.unlock()
    }
    var all: [ToolResult] {
        lock.lock()
        defer { lock.unlock() }
        return items
    }
}
