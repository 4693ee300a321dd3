import Foundation
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// load's /metrics endpoint, scraped by a real Prometheus server (Debian's `prometheus`), and
/// watch's progress lines reaching it through validate.
@Suite struct MetricsTests {
    @Test func prometheusScrapesWhatTheTableHolds() throws {
        try TestDatabase.with { db in
            let dir = try TemporaryFolder("metrics")
            let incoming = dir.path("incoming")
            let gen = try runTool(
                Executables.url("gen"),
                [
                    "--out", incoming, "--files", "4", "--rows-per-file", "300", "--interval", "0", "--seed", "11",
                    "--invalid-rate", "0.1",
                ])
            #expect(gen.status == 0, "\(gen.stderr)")

            let pipeline = try MetricsPipeline(db: db, folder: dir)
            defer { pipeline.stop() }
            let url = try #require(pipeline.metricsURL(), "load never said where its metrics are: \(pipeline.stderr("load"))")

            let loaded = { Int(try db.scalar("SELECT count(*) FROM ecommerce_events") ?? "") ?? -1 }
            #expect(
                eventually(timeout: 120) {
                    (Int((try? db.scalar("SELECT count(source_file) FROM ingest_checkpoints")) ?? "") ?? 0) == 4
                }, "not all files committed; load: \(pipeline.stderr("load"))")
            let rows = try loaded()
            #expect(rows > 0)
            let reasons =
                Int(
                    try db.scalar(
                        "SELECT count(*) FROM ecommerce_bad_records, jsonb_array_elements(reasons)") ?? "") ?? -1
            let badRows = Int(try db.scalar("SELECT count(*) FROM ecommerce_bad_records") ?? "") ?? -1
            #expect(reasons > 0)

            // The endpoint itself: values equal to the tables' counts.
            var metrics: [String: Double] = [:]
            #expect(
                eventually(timeout: 30) {
                    metrics = (try? scrape(url)) ?? [:]
                    return metrics["ingest_files_pending"] == 0
                }, "files pending never reached 0: \(metrics)")
            #expect(metrics["ingest_rows_loaded_total"] == Double(rows))
            #expect(metrics["ingest_files_committed_total"] == 4)
            #expect(metrics["ingest_rows_read_total"] == Double(rows + badRows))
            let rejected = metrics.filter { $0.key.hasPrefix("ingest_rows_rejected_total{") }.values.reduce(0, +)
            #expect(rejected == Double(reasons))
            #expect(metrics["ingest_rows_rejected_total{reason=\"none\"}"] == 0)
            #expect((metrics["ingest_batches_total"] ?? 0) >= 1)
            #expect(metrics["ingest_commit_latency_seconds_count"] == 4)
            #expect(metrics["ingest_oldest_pending_age_seconds"] == 0)
            #expect((metrics["ingest_last_commit_timestamp_seconds"] ?? 0) > Date().timeIntervalSince1970 - 600)

            // bin/status --json reads the same endpoint (rows read) and the tables (rows, rejects).
            try "\(url)\n".write(toFile: dir.path("metrics-url"), atomically: true, encoding: .utf8)
            var env = ProcessInfo.processInfo.environment
            env["PGDATABASE"] = db.name
            env["INGEST_METRICS_URL_FILE"] = dir.path("metrics-url")
            env["INGEST_INCOMING"] = incoming
            let status = try runTool(
                TestDatabase.packageRoot.appendingPathComponent("bin/status"), ["--json"], environment: env, timeout: 60)
            #expect(status.status == 0, "\(status.stderr)")
            let json = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
            #expect(json?["rows_loaded"] as? Int == rows, "\(status.stdout)")
            #expect(json?["rows_rejected"] as? Int == badRows)
            #expect(json?["rows_read"] as? Int == rows + badRows)
            #expect(json?["files_committed"] as? Int == 4)
            #expect(json?["files_pending"] as? Int == 0)
            #expect(json?["rows_per_second"] as? Int == 0)  // two samples a second apart, nothing read in between
            #expect(json?["metrics_url"] as? String == url)

            // A real Prometheus server scrapes it; its query API must agree with the table.
            let prometheus = try PrometheusServer(target: url, folder: dir)
            defer { prometheus.stop() }
            var answer: Double?
            #expect(
                eventually(timeout: 90) {
                    answer = try? prometheus.query("ingest_rows_loaded_total")
                    return answer == Double(rows)
                }, "Prometheus answered \(String(describing: answer)), the table holds \(rows); prometheus: \(prometheus.stderr())")
            #expect(try prometheus.query("sum(ingest_rows_rejected_total)") == Double(reasons))
            #expect(try prometheus.query("ingest_files_committed_total") == 4)
        }
    }

    @Test func progressLinesBecomeBacklogAndLag() throws {
        try TestDatabase.with { db in
            let dir = try TemporaryFolder("progress")
            let load = Process()
            load.executableURL = Executables.url("load")
            load.arguments = [
                "--db", db.conninfo, "--metrics-listen", "127.0.0.1:0", "--incoming", dir.path("in"),
                "--bad-records", dir.path("bad"), "--archive", dir.path("done"),
            ]
            let input = Pipe()
            load.standardInput = input
            load.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            FileManager.default.createFile(atPath: dir.path("load.err"), contents: nil)
            load.standardError = FileHandle(forWritingAtPath: dir.path("load.err"))
            try load.run()
            defer {
                try? input.fileHandleForWriting.close()
                load.waitUntilExit()
            }
            var url: String?
            #expect(
                eventually(timeout: 60) {
                    url = metricsURL(in: (try? String(contentsOfFile: dir.path("load.err"), encoding: .utf8)) ?? "")
                    return url != nil
                })
            let endpoint = try #require(url)
            let format = ISO8601DateFormatter()
            format.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            let twoMinutesAgo = format.string(from: Date().addingTimeInterval(-120))
            let lines = """
                {"kind":"progress","files_pending":3,"bytes_pending":12345,"oldest_pending":"\(twoMinutesAgo)"}
                {"kind":"record","file":"a.csv","line":2,"event_id":"6f1c5b7e-2b1a-4c1e-9f0a-3d2e1c0b9a87","user_id":1,"product_id":2,"event_type":"view","price":null,"event_timestamp":"2024-01-30T10:15:23.123Z"}

                """
            try input.fileHandleForWriting.write(contentsOf: Data(lines.utf8))
            var metrics: [String: Double] = [:]
            #expect(
                eventually(timeout: 30) {
                    metrics = (try? scrape(endpoint)) ?? [:]
                    return metrics["ingest_files_pending"] == 4  // 3 in the folder + a.csv, held by load
                }, "\(metrics)")
            #expect(metrics["ingest_bytes_pending"] == 12345)
            #expect(metrics["ingest_rows_read_total"] == 1)
            let lag = metrics["ingest_oldest_pending_age_seconds"] ?? 0
            #expect(lag >= 119 && lag < 600, "lag \(lag)")
            let log = (try? String(contentsOfFile: dir.path("load.err"), encoding: .utf8)) ?? ""
            #expect(!log.contains("are not loaded"), "load must consume progress lines: \(log)")
        }
    }

    @Test func anAddressInUseStopsLoadWithOneLine() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listening = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        #expect(listening)
        let port = UInt16(bigEndian: addr.sin_port)
        let r = try runTool(Executables.url("load"), ["--metrics-listen", "127.0.0.1:\(port)"], stdin: Data())
        #expect(r.status == 1)
        #expect(r.stderr.contains("load - CRITICAL - --metrics-listen 127.0.0.1:\(port): Address already in use"), "\(r.stderr)")
        #expect(r.stderr.components(separatedBy: "Address already in use").count == 2, "one line: \(r.stderr)")
        let usage = try runTool(Executables.url("load"), ["--metrics-listen", "nowhere"], stdin: Data())
        #expect(usage.status == 64)
        #expect(usage.stderr.contains("--metrics-listen: not HOST:PORT: nowhere"))
    }

    @Test func theEndpointAnswersScrapesOnly() throws {
        try TestDatabase.with { db in
            let load = try ServingLoad(db: db)
            defer { load.stop() }
            let base = load.url.replacingOccurrences(of: "/metrics", with: "")
            #expect(try httpStatus(load.url) == "200")
            #expect(try httpStatus(load.url + "?debug=1") == "200")
            #expect(try httpStatus(base + "/") == "200")
            #expect(try httpGet(base + "/healthz") == "ok\n")
            #expect(try httpGet(base + "/readyz") == "ready\n")
            #expect(try httpStatus(base + "/readyz", method: "HEAD") == "200")
            #expect(try httpStatus(base + "/metrics/x") == "404")
            #expect(try httpStatus(base + "/favicon.ico") == "404")
            #expect(try httpStatus(load.url, method: "POST") == "405")
            #expect(try httpStatus(load.url, method: "DELETE") == "405")
            #expect(try httpStatus(load.url, method: "HEAD") == "200")
            // Not HTTP, and a request that never ends its headers: answered, not hung on.
            #expect(try exchange(port: load.port, "hello\r\n\r\n").hasPrefix("HTTP/1.1 400 "))
            let huge = "GET /metrics HTTP/1.1\r\nX-Padding: " + String(repeating: "a", count: 20_000) + "\r\n\r\n"
            #expect(try exchange(port: load.port, huge).hasPrefix("HTTP/1.1 431 "))
            let answer = try exchange(port: load.port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(answer.prefix(200))")
            #expect(answer.contains("\r\nConnection: close\r\n"))
            #expect(answer.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"))
            #expect(answer.contains("\ningest_rows_read_total 0\n"))
            #expect(load.isRunning)
        }
    }

    @Test func aSilentClientDelaysNoScrape() throws {
        try TestDatabase.with { db in
            let load = try ServingLoad(db: db)
            defer { load.stop() }
            // Connects and sends nothing; another sends half a request line.
            let silent = try LoopbackConnection(port: load.port)
            let halfway = try LoopbackConnection(port: load.port)
            try halfway.send("GET /metr")
            let started = Date()
            let samples = try scrape(load.url)
            #expect(samples["ingest_rows_read_total"] == 0)
            #expect(Date().timeIntervalSince(started) < 3, "a scrape waited for the silent clients")
            // The endpoint drops both at its read timeout (5 s), without an answer.
            #expect(try silent.receiveAll(timeout: 20) == "")
            #expect(try halfway.receiveAll(timeout: 20) == "")
            #expect(Date().timeIntervalSince(started) < 15)
            #expect(try httpStatus(load.url) == "200")
        }
    }

    @Test func concurrentScrapesEachGetTheWholeExposition() throws {
        try TestDatabase.with { db in
            let load = try ServingLoad(db: db)
            defer { load.stop() }
            // Interleaved by hand: the first request completes after the second was answered.
            let first = try LoopbackConnection(port: load.port)
            let second = try LoopbackConnection(port: load.port)
            try first.send("GET /metrics HTTP/1.1\r\n")
            try second.send("GET /metrics HTTP/1.1\r\n\r\n")
            let secondAnswer = try second.receiveAll(timeout: 10)
            try first.send("Host: x\r\n\r\n")
            let firstAnswer = try first.receiveAll(timeout: 10)
            for answer in [firstAnswer, secondAnswer] {
                #expect(answer.hasPrefix("HTTP/1.1 200 OK"), "\(answer.prefix(200))")
                #expect(answer.hasSuffix("\n") && answer.contains("ingest_oldest_pending_age_seconds"))
            }
            // And two real clients at once.
            let results = Mutex<[[String: Double]]>([])
            let url = load.url
            DispatchQueue.concurrentPerform(iterations: 2) { _ in
                let samples = (try? scrape(url)) ?? [:]
                results.withLock { $0.append(samples) }
            }
            let both = results.withLock { $0 }
            #expect(both.count == 2)
            for samples in both {
                #expect(samples["ingest_rows_read_total"] == 0, "\(samples)")
                #expect(samples["ingest_files_pending"] == 0)
            }
        }
    }

    @Test func anIPv6AddressIsServed() throws {
        try TestDatabase.with { db in
            let load = try ServingLoad(db: db, listen: "[::1]:0")
            defer { load.stop() }
            #expect(load.url.hasPrefix("http://[::1]:"), "\(load.url)")
            #expect(try scrape(load.url)["ingest_rows_read_total"] == 0)
        }
    }

    @Test func watchWritesProgressBeforeEachFile() throws {
        let dir = try TemporaryFolder("watch-progress")
        let incoming = dir.path("incoming")
        try FileManager.default.createDirectory(atPath: incoming, withIntermediateDirectories: true)
        var sizes: [Int] = []
        for name in ["a.csv", "b.csv", "c.csv"] {
            let csv =
                "event_id,user_id,product_id,event_type,price,event_timestamp\n"
                + "6f1c5b7e-2b1a-4c1e-9f0a-3d2e1c0b9a8\(sizes.count),1,2,view,,2024-01-30 10:15:23\n"
            try csv.write(toFile: incoming + "/" + name, atomically: true, encoding: .utf8)
            sizes.append(csv.utf8.count)
        }
        let r = try runTool(Executables.url("watch"), ["--once", "--progress", incoming])
        #expect(r.status == 0, "\(r.stderr)")
        let progress = r.lines.filter { $0.contains(#""kind":"progress""#) }
        #expect(progress.count == 5, "\(r.stdout)")  // the listing, before each file, after the last
        #expect(progress.first?.contains(#""files_pending":3,"bytes_pending":\#(sizes.reduce(0, +))"#) == true)
        #expect(progress.dropFirst().first?.contains(#""files_pending":2"#) == true)
        #expect(progress.last?.contains(#""files_pending":0,"bytes_pending":0}"#) == true)
        // Each progress line comes before the rows of the file it excludes.
        let kinds = r.lines.map { $0.contains("progress") ? "p" : $0.contains(#""kind":"eof""#) ? "e" : "r" }.joined()
        #expect(kinds == "pprepreprep", "\(kinds)")
        // Without --progress the stream is as before.
        let plain = try runTool(Executables.url("watch"), ["--once", incoming])
        #expect(!plain.stdout.contains("progress"))
    }

    @Test func watchLogsEachSkipOncePerName() throws {
        let dir = try TemporaryFolder("skips")
        let incoming = dir.path("incoming")
        let fm = FileManager.default
        try fm.createDirectory(atPath: incoming + "/sub", withIntermediateDirectories: true)
        for name in [".hidden.csv", "x.csv.tmp", "notes.txt", "UPPER.CSV"] {
            fm.createFile(atPath: incoming + "/" + name, contents: Data("a\n".utf8))
        }
        let err = dir.path("watch.err")
        let watch = try SpawnedProcess([Executables.url("watch").path, incoming], stderr: err)
        defer {
            watch.signal(SIGTERM)
            if !watch.wait(timeout: 30) { watch.signal(SIGKILL) }
        }
        let log = { (try? String(contentsOfFile: err, encoding: .utf8)) ?? "" }
        #expect(eventually(timeout: 30) { log().contains("Watching ") })
        // Names that appear after the start, some twice.
        for _ in 0..<2 {
            fm.createFile(atPath: incoming + "/later.txt", contents: Data("b\n".utf8))
            fm.createFile(atPath: incoming + "/.later.csv.tmp", contents: Data("b\n".utf8))
            try? fm.createDirectory(atPath: incoming + "/sub2", withIntermediateDirectories: false)
        }
        let expected = [
            ".hidden.csv: a dot-file (hidden)",
            "x.csv.tmp: a temporary name (*.tmp, *.part, *~)",
            "notes.txt: does not match --glob *.csv",
            "UPPER.CSV: does not match --glob *.csv (names are case-sensitive)",
            "sub: a directory",
            "later.txt: does not match --glob *.csv",
            ".later.csv.tmp: a dot-file (hidden)",
            "sub2: a directory",
        ]
        #expect(eventually(timeout: 30) { expected.allSatisfy { log().contains("INFO - Skipping \(incoming)/\($0)") } }, "\(log())")
        for line in expected {
            let count = log().components(separatedBy: "Skipping \(incoming)/\(line)").count - 1
            #expect(count == 1, "\(line) logged \(count) times")
        }
    }
}

/// `watch --progress | validate | load --metrics-listen 127.0.0.1:0`, each stage's stderr in its own file.
final class MetricsPipeline {
    let folder: TemporaryFolder
    let shell: SpawnedProcess

    init(db: TestDatabase, folder: TemporaryFolder) throws {
        self.folder = folder
        func stage(_ name: String, _ args: [String]) -> String {
            "sh -c 'echo $$ > \(folder.path(name + ".pid")); exec \"$@\"' \(name) "
                + args.map(shellQuoted).joined(separator: " ") + " 2>\(shellQuoted(folder.path(name + ".err")))"
        }
        let script = [
            stage("watch", [Executables.url("watch").path, "--progress", folder.path("incoming")]),
            stage("validate", [Executables.url("validate").path]),
            stage(
                "load",
                [
                    Executables.url("load").path, "--db", db.conninfo, "--metrics-listen", "127.0.0.1:0",
                    "--incoming", folder.path("incoming"), "--archive", folder.path("processed"),
                    "--bad-records", folder.path("bad"),
                ]),
        ].joined(separator: " | ")
        shell = try SpawnedProcess(["/bin/bash", "-c", script + " >/dev/null"])
    }

    func stderr(_ stage: String) -> String {
        (try? String(contentsOfFile: folder.path(stage + ".err"), encoding: .utf8)) ?? ""
    }

    func metricsURL() -> String? {
        var url: String?
        _ = eventually(timeout: 60) {
            url = IntegrationTests.metricsURL(in: stderr("load"))
            return url != nil || !shell.isRunning
        }
        return url
    }

    /// SIGTERM to watch: validate and load drain and exit.
    func stop() {
        if let text = try? String(contentsOfFile: folder.path("watch.pid"), encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
        {
            kill(pid, SIGTERM)
        }
        if !shell.wait(timeout: 60) {
            for name in ["watch", "validate", "load"] {
                if let text = try? String(contentsOfFile: folder.path(name + ".pid"), encoding: .utf8),
                    let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
                {
                    kill(pid, SIGKILL)
                }
            }
            shell.wait(timeout: 10)
        }
    }
}

/// Debian's prometheus on a free loopback port, scraping one target every second.
final class PrometheusServer {
    let port: UInt16
    let folder: TemporaryFolder
    let process: SpawnedProcess

    init(target metricsURL: String, folder: TemporaryFolder) throws {
        self.folder = folder
        let target = metricsURL.replacingOccurrences(of: "http://", with: "").replacingOccurrences(of: "/metrics", with: "")
        let config = """
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: ingest
                static_configs:
                  - targets: ["\(target)"]
            """
        try config.write(toFile: folder.path("prometheus.yml"), atomically: true, encoding: .utf8)
        var started: (UInt16, SpawnedProcess)?
        // A free port can be taken between the probe and prometheus' bind: try a few.
        for _ in 0..<5 {
            let port = try freeLoopbackPort()
            try? FileManager.default.removeItem(atPath: folder.path("prometheus.err"))
            let p = try SpawnedProcess(
                [
                    "/usr/bin/prometheus", "--config.file=\(folder.path("prometheus.yml"))",
                    "--storage.tsdb.path=\(folder.path("tsdb"))", "--web.listen-address=127.0.0.1:\(port)",
                ], stderr: folder.path("prometheus.err"))
            let ready = eventually(timeout: 60) {
                !p.isRunning || ((try? httpGet("http://127.0.0.1:\(port)/-/ready")) ?? "").contains("Ready")
            }
            if ready && p.isRunning {
                started = (port, p)
                break
            }
            p.signal(SIGKILL)
            p.wait(timeout: 10)
        }
        guard let started else {
            throw TestDatabaseError(
                "prometheus did not start: \((try? String(contentsOfFile: folder.path("prometheus.err"), encoding: .utf8)) ?? "")")
        }
        (port, process) = started
    }

    func stderr() -> String {
        (try? String(contentsOfFile: folder.path("prometheus.err"), encoding: .utf8)) ?? ""
    }

    /// The value of an instant query that returns one sample.
    func query(_ promQL: String) throws -> Double? {
        let encoded = promQL.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? promQL
        let body = try httpGet("http://127.0.0.1:\(port)/api/v1/query?query=\(encoded)")
        guard let json = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
            let data = json["data"] as? [String: Any], let result = data["result"] as? [[String: Any]],
            let value = result.first?["value"] as? [Any], value.count == 2, let text = value[1] as? String
        else { return nil }
        return Double(text)
    }

    func stop() {
        process.signal(SIGTERM)
        if !process.wait(timeout: 30) {
            process.signal(SIGKILL)
            process.wait(timeout: 10)
        }
    }
}

/// A folder under the temporary directory, removed when released.
final class TemporaryFolder: @unchecked Sendable {
    let url: URL
    init(_ prefix: String) throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
}

/// load with `--metrics-listen` on a free port, its input held open until `stop()`.
final class ServingLoad {
    let process = Process()
    let input = Pipe()
    let folder: TemporaryFolder
    let url: String
    let port: UInt16

    init(db: TestDatabase, listen: String = "127.0.0.1:0") throws {
        let folder = try TemporaryFolder("serving")
        let log = folder.path("load.err")
        process.executableURL = Executables.url("load")
        process.arguments = [
            "--db", db.conninfo, "--metrics-listen", listen, "--incoming", folder.path("in"),
            "--bad-records", folder.path("bad"), "--archive", folder.path("done"), "--log-level", "trace",
        ]
        process.standardInput = input
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        FileManager.default.createFile(atPath: log, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: log)
        try process.run()
        let process = self.process
        var found: String?
        _ = eventually(timeout: 60) {
            found = metricsURL(in: (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
            return found != nil || !process.isRunning
        }
        guard let found, let colon = found.lastIndex(of: ":"),
            let port = UInt16(found[found.index(after: colon)...].prefix { $0.isNumber })
        else {
            try? input.fileHandleForWriting.close()
            process.waitUntilExit()
            throw TestDatabaseError(
                "load never said where its metrics are: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
        (self.folder, url, self.port) = (folder, found, port)
    }

    var isRunning: Bool { process.isRunning }

    func stderr() -> String { (try? String(contentsOfFile: folder.path("load.err"), encoding: .utf8)) ?? "" }

    func stop() {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }
}

/// A raw TCP connection to 127.0.0.1, for what curl will not send.
final class LoopbackConnection {
    let fd: Int32

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = port.bigEndian
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard fd >= 0, connected == 0 else {
            let problem = String(cString: strerror(errno))
            if fd >= 0 { close(fd) }
            throw TestDatabaseError("connect to port \(port): \(problem)")
        }
    }

    deinit { close(fd) }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TestDatabaseError("send: \(String(cString: strerror(errno)))") }
            sent += n
        }
    }

    /// Everything until the other side closes; throws when it has not closed within `timeout` seconds.
    func receiveAll(timeout: Double) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw TestDatabaseError("not closed within \(timeout) s; got \(received.count) bytes") }
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, Int32(left * 1000) + 1) > 0 else { continue }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            received += chunk[..<n]
        }
        return String(decoding: received, as: UTF8.self)
    }
}

/// Sends `request` on a new connection and returns all of the answer.
func exchange(port: UInt16, _ request: String) throws -> String {
    let connection = try LoopbackConnection(port: port)
    try connection.send(request)
    return try connection.receiveAll(timeout: 10)
}

/// /readyz while the database does not answer: 503 saying so, /healthz still 200; ready again
/// once the server is back and the rows are in.
@Test func readinessFollowsTheDatabase() throws {
    let cluster = try PrivateCluster()
    let f = try LoadFixture()
    let port = try freeLoopbackPort()
    let args = [
        "--incoming", f.incoming.path, "--bad-records", f.bad.path, "--archive", f.processed.path,
        "--metrics-listen", "127.0.0.1:\(port)",
    ]
    let run = try StreamingLoad(arguments: args, environment: cluster.processEnvironment())
    let base = "http://127.0.0.1:\(port)"
    #expect(eventually(timeout: 60) { (try? httpStatus(base + "/readyz")) == "200" }, "\(run.stderr.text())")
    try cluster.stop()
    try run.send(try f.file("while-down.csv", valid: 20, rejects: 0))
    #expect(eventually(timeout: 60) { (try? httpStatus(base + "/readyz")) == "503" }, "\(run.stderr.text())")
    let answer = try exchange(port: port, "GET /readyz HTTP/1.1\r\n\r\n")
    #expect(answer.contains("\r\n\r\nnot ready: the database does not answer (for "), "\(answer)")
    #expect(try httpStatus(base + "/healthz") == "200")
    try cluster.start()
    #expect(eventually(timeout: 60) { (try? httpStatus(base + "/readyz")) == "200" }, "\(run.stderr.text())")
    #expect(run.finish() == 0, "\(run.stderr.text())")
    #expect(try cluster.psql("SELECT count(*) FROM ecommerce_events") == "20")
}

/// The HTTP status code curl got for `method url` (`200`, `404`).
func httpStatus(_ url: String, method: String = "GET") throws -> String {
    var arguments = ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", url]
    arguments += method == "HEAD" ? ["-I"] : ["-X", method]
    let r = try runTool(URL(fileURLWithPath: "/usr/bin/curl"), arguments, timeout: 30)
    guard r.status == 0 else { throw TestDatabaseError("\(method) \(url): curl exit \(r.status): \(r.stderr)") }
    return r.stdout
}

/// `http://…/metrics` from load's "metrics at …" log line.
func metricsURL(in log: String) -> String? {
    guard let range = log.range(of: "metrics at http://") else { return nil }
    let rest = log[range.upperBound...]
    let end = rest.firstIndex(where: { $0 == "\n" || $0 == " " }) ?? rest.endIndex
    return "http://" + rest[..<end]
}

/// The samples of a text exposition: `name{labels}` → value.
func scrape(_ url: String) throws -> [String: Double] {
    var samples: [String: Double] = [:]
    for line in try httpGet(url).split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
        samples[String(line[..<space])] = value
    }
    return samples
}

/// A GET with curl (a real HTTP client; the tests do not parse HTTP themselves).
func httpGet(_ url: String) throws -> String {
    let r = try runTool(URL(fileURLWithPath: "/usr/bin/curl"), ["-sS", "--fail", "--max-time", "10", url], timeout: 30)
    guard r.status == 0 else { throw TestDatabaseError("GET \(url): curl exit \(r.status): \(r.stderr)") }
    return r.stdout
}

/// A loopback TCP port nobody listens on right now (the kernel's pick for port 0), free again
/// once returned.
func freeLoopbackPort() throws -> UInt16 { UInt16(try ClosedPort().number) }
