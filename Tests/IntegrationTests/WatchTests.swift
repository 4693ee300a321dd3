import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A running `watch` whose stdout is read line by line as it arrives, each read with a
/// deadline so a hung `watch` fails the test instead of hanging it.
final class WatchRun {
    let process = Process()
    let stdout = Pipe()
    let stderrPath: String
    private var pending: [UInt8] = []
    private var consumed = 0
    private var closed = false

    init(_ arguments: [String], stderrPath: String, readStdout: Bool = true) throws {
        self.stderrPath = stderrPath
        FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = Executables.url("watch")
        process.arguments = arguments
        process.standardOutput = stdout
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// The next stdout line, or nil at end of output or when `seconds` pass first.
    func nextLine(within seconds: Double = 10) -> String? {
        let deadline = Date().addingTimeInterval(seconds)
        let fd = stdout.fileHandleForReading.fileDescriptor
        while true {
            if let nl = pending[consumed...].firstIndex(of: 0x0A) {
                let line = String(decoding: pending[consumed..<nl], as: UTF8.self)
                consumed = nl + 1
                return line
            }
            pending.removeFirst(consumed)
            consumed = 0
            if closed { return nil }
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { return nil }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, Int32(min(left, 1) * 1000) + 1) > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { closed = true } else { pending += chunk[..<n] }
        }
    }

    /// Lines up to and including the eof marker of `file`.
    func lines(throughMarkerOf file: String, within seconds: Double = 10) -> [String] {
        var out: [String] = []
        let deadline = Date().addingTimeInterval(seconds)
        while let line = nextLine(within: max(0.01, deadline.timeIntervalSinceNow)) {
            out.append(line)
            if line.hasPrefix(#"{"kind":"eof","file":"\#(file)""#) { break }
        }
        return out
    }

    /// Waits for exit (killing it after `seconds`); the exit status, or nil if it had to be killed.
    func exitStatus(within seconds: Double = 10) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return process.terminationStatus
    }

    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// A scratch folder for one test.
struct Scratch {
    let root: String
    var incoming: String { root + "/incoming" }

    init() throws {
        root = NSTemporaryDirectory() + "watch-it-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: root + "/incoming", withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: root) }

    static let header = "event_id,user_id,product_id,event_type,price,event_timestamp\n"

    static func csv(rows: Int, tag: String = "e") -> String {
        var text = header
        for i in 0..<rows { text += "\(tag)\(i),\(i % 97),\(i % 13),view,,2024-01-30 10:15:23.123\n" }
        return text
    }

    /// Writes `text` under a hidden temp name and renames it in, as `gen` does.
    func renameIn(_ name: String, _ text: String) throws {
        let temp = incoming + "/." + name + ".tmp"
        try text.write(toFile: temp, atomically: false, encoding: .utf8)
        guard rename(temp, incoming + "/" + name) == 0 else { throw POSIXError(.EIO) }
    }

    /// Writes a file in place with plain syscalls (Foundation's `write(toFile:)` is slow for 10,000 files).
    func put(_ name: String, _ text: String) throws {
        let fd = open(incoming + "/" + name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        defer { close(fd) }
        var copy = text
        let written = copy.withUTF8 { write(fd, $0.baseAddress, $0.count) }
        guard written == text.utf8.count else { throw POSIXError(.EIO) }
    }
}

private func kind(_ line: String) -> String? {
    guard let range = line.range(of: #""kind":""#) else { return nil }
    return String(line[range.upperBound...].prefix { $0 != "\"" })
}

private func file(_ line: String) -> String? {
    guard let range = line.range(of: #""file":""#) else { return nil }
    return String(line[range.upperBound...].prefix { $0 != "\"" })
}

/// Waits until `watch` has logged that it follows the folder (its inotify watch is in place).
private func waitUntilWatching(_ run: WatchRun, within seconds: Double = 10) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if run.stderr.contains("Watching ") { return true }
        usleep(10_000)
    }
    return false
}

@Suite(.serialized) struct WatchTests {
    @Test func fileRenamedInIsStreamedWithItsMarker() throws {
        let s = try Scratch()
        defer { s.remove() }
        let run = try WatchRun([s.incoming], stderrPath: s.root + "/err")
        #expect(waitUntilWatching(run))
        try s.renameIn("batch_1.csv", Scratch.csv(rows: 3))
        let lines = run.lines(throughMarkerOf: "batch_1.csv")
        #expect(lines.count == 4)
        #expect(lines.prefix(3).allSatisfy { kind($0) == "record" && file($0) == "batch_1.csv" })
        #expect(lines.last?.contains(#""rows":3,"#) == true)
        #expect(lines.last?.contains(#""seen":"20"#) == true)
        // Nothing else (the temp name was never read).
        #expect(run.nextLine(within: 0.5) == nil)
        kill(run.process.processIdentifier, SIGTERM)
        #expect(run.exitStatus() == 0)
        #expect(run.stderr.contains("INFO - Emitted batch_1.csv: 3 rows"))
    }

    /// gen's pattern: write a hidden temp file, then link(2) it into place (never overwriting)
    /// and unlink the temp name. inotify reports IN_CREATE, not IN_MOVED_TO.
    @Test func fileHardLinkedInIsStreamed() throws {
        let s = try Scratch()
        defer { s.remove() }
        let run = try WatchRun([s.incoming], stderrPath: s.root + "/err")
        #expect(waitUntilWatching(run))
        let temporary = s.incoming + "/.batch_2.csv.tmp"
        try Scratch.csv(rows: 5).write(toFile: temporary, atomically: false, encoding: .utf8)
        #expect(link(temporary, s.incoming + "/batch_2.csv") == 0)
        #expect(unlink(temporary) == 0)
        let lines = run.lines(throughMarkerOf: "batch_2.csv")
        #expect(lines.count == 6)
        #expect(lines.last?.contains(#""rows":5,"#) == true)
        kill(run.process.processIdentifier, SIGTERM)
        #expect(run.exitStatus() == 0)
    }

    @Test func fileWrittenSlowlyIsStreamedOnlyWhenClosed() throws {
        let s = try Scratch()
        defer { s.remove() }
        let run = try WatchRun([s.incoming], stderrPath: s.root + "/err")
        #expect(waitUntilWatching(run))
        let text = Scratch.csv(rows: 40)
        let bytes = Array(text.utf8)
        let fd = open(s.incoming + "/slow.csv", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        #expect(fd >= 0)
        // Cut mid-row on purpose: a reader that did not wait for the close would emit half a row.
        let cuts = [0, 37, 500, 1001, bytes.count]
        for (a, b) in zip(cuts, cuts.dropFirst()) {
            bytes[a..<b].withUnsafeBytes { _ = write(fd, $0.baseAddress!, $0.count) }
            #expect(run.nextLine(within: 0.2) == nil)
        }
        close(fd)
        let lines = run.lines(throughMarkerOf: "slow.csv")
        #expect(lines.count == 41)
        #expect(lines.filter { kind($0) == "record" }.count == 40)
        #expect(lines.last?.contains(#""rows":40,"bytes":\#(bytes.count),"#) == true)
        kill(run.process.processIdentifier, SIGINT)
        #expect(run.exitStatus() == 0)
    }

    @Test func filesPresentAtStartComeFirstInNameOrderThenNewOnes() throws {
        let s = try Scratch()
        defer { s.remove() }
        for name in ["b.csv", "a.csv", "c.csv"] { try s.put(name, Scratch.csv(rows: 2, tag: name)) }
        try s.put(".hidden.csv", Scratch.csv(rows: 1))
        try s.put("x.csv.tmp", Scratch.csv(rows: 1))
        try s.put("x.csv.part", Scratch.csv(rows: 1))
        try s.put("x.csv~", Scratch.csv(rows: 1))
        try s.put("notes.txt", "hello\n")
        let run = try WatchRun([s.incoming], stderrPath: s.root + "/err")
        var markers: [String] = []
        for _ in 0..<9 {
            guard let line = run.nextLine() else { break }
            if kind(line) == "eof" { markers.append(file(line) ?? "?") }
        }
        #expect(markers == ["a.csv", "b.csv", "c.csv"])
        #expect(waitUntilWatching(run))
        try s.renameIn("0_new.csv", Scratch.csv(rows: 1))  // sorts first, but arrives later
        try s.put(".also-hidden.csv", Scratch.csv(rows: 1))
        try s.put("late.tmp", Scratch.csv(rows: 1))
        let lines = run.lines(throughMarkerOf: "0_new.csv")
        #expect(lines.map { file($0) } == ["0_new.csv", "0_new.csv"])
        #expect(run.nextLine(within: 0.5) == nil)
        kill(run.process.processIdentifier, SIGINT)
        #expect(run.exitStatus() == 0)
    }

    @Test func replacedFileIsSentAgainButNotARepeatedEvent() throws {
        let s = try Scratch()
        defer { s.remove() }
        try s.put("a.csv", Scratch.csv(rows: 1))
        let run = try WatchRun([s.incoming], stderrPath: s.root + "/err")
        #expect(run.lines(throughMarkerOf: "a.csv").count == 2)
        #expect(waitUntilWatching(run))
        try s.renameIn("a.csv", Scratch.csv(rows: 2))
        let again = run.lines(throughMarkerOf: "a.csv")
        #expect(again.count == 3)
        #expect(run.nextLine(within: 0.5) == nil)
        kill(run.process.processIdentifier, SIGINT)
        #expect(run.exitStatus() == 0)
    }

    @Test func tenThousandFilesAtStartAreStreamedInNameOrder() throws {
        let s = try Scratch()
        defer { s.remove() }
        let body = Scratch.csv(rows: 1)
        for i in 0..<10_000 { try s.put(String(format: "batch_%05d.csv", 9_999 - i), body) }
        let started = Date()
        let run = try WatchRun(["--once", s.incoming], stderrPath: s.root + "/err")
        var markers = 0
        var inOrder = true
        var previous = ""
        while let line = run.nextLine(within: 60) {
            guard kind(line) == "eof", let name = file(line) else { continue }
            if name <= previous { inOrder = false }
            previous = name
            markers += 1
        }
        #expect(markers == 10_000)
        #expect(inOrder)
        #expect(previous == "batch_09999.csv")
        #expect(run.exitStatus() == 0)
        #expect(Date().timeIntervalSince(started) < 30)
    }

    @Test func journaledFilesAreSkippedAndANewFileStreamsWithinSeconds() throws {
        let s = try Scratch()
        defer { s.remove() }
        let body = Scratch.csv(rows: 1)
        let sha = sha256Hex(body)
        var journal = ""
        for i in 0..<10_000 {
            let name = String(format: "batch_%05d.csv", i)
            try s.put(name, body)
            journal += #"{"file":"\#(name)","bytes":\#(body.utf8.count),"sha256":"\#(sha)"}"# + "\n"
        }
        // Same name and size as its entry, other content: must be sent.
        try s.put("batch_00007.csv", body.replacingOccurrences(of: "e0,", with: "x0,"))
        try journal.write(toFile: s.incoming + "/.ingest-committed", atomically: true, encoding: .utf8)

        let started = Date()
        let run = try WatchRun([s.incoming], stderrPath: s.root + "/err")
        let first = run.lines(throughMarkerOf: "batch_00007.csv", within: 20)
        #expect(first.map { file($0) } == ["batch_00007.csv", "batch_00007.csv"])
        #expect(waitUntilWatching(run))
        try s.renameIn("batch_10000.csv", body)
        let lines = run.lines(throughMarkerOf: "batch_10000.csv", within: 20)
        #expect(lines.count == 2)
        #expect(Date().timeIntervalSince(started) < 5)
        kill(run.process.processIdentifier, SIGINT)
        #expect(run.exitStatus() == 0)
        #expect(run.stderr.contains("Skipped 9999 files already committed (journal)"))
    }

    @Test func crlfBomAndQuotedNewlinesComeThroughIntact() throws {
        let s = try Scratch()
        defer { s.remove() }
        let text =
            "\u{FEFF}event_id,user_id,product_id,event_type,price,event_timestamp\r\n"
            + "e1,1,2,\"multi\r\nline\",1.00,2024-01-30 10:15:23.123\r\n"
            + "e2,1,2,view,,2024-01-30 10:15:24.000\r\n"
        try s.put("crlf.csv", text)
        let run = try WatchRun(["--once", s.incoming + "/crlf.csv"], stderrPath: s.root + "/err")
        let lines = run.lines(throughMarkerOf: "crlf.csv")
        #expect(lines.count == 3)
        #expect(lines[0].contains(#""line":2,"event_id":"e1""#))
        #expect(lines[0].contains(#""event_type":"multi\r\nline""#))
        #expect(lines[1].contains(#""line":4,"event_id":"e2""#))
        #expect(lines[1].hasSuffix(#""event_timestamp":"2024-01-30 10:15:24.000"}"#))
        #expect(lines[2].contains(#""rows":2,"bytes":\#(text.utf8.count),"#))
        #expect(run.exitStatus() == 0)
    }

    /// Tests run as root, where `chmod 000` does not stop a read; a dangling symlink, a FIFO
    /// and a directory named like a CSV file are honest stand-ins for files that cannot be read.
    @Test func unreadableEntriesDoNotStopTheStream() throws {
        let s = try Scratch()
        defer { s.remove() }
        try s.put("a.csv", Scratch.csv(rows: 1))
        try FileManager.default.createSymbolicLink(atPath: s.incoming + "/b.csv", withDestinationPath: s.root + "/gone")
        #expect(mkfifo(s.incoming + "/c.csv", 0o644) == 0)
        try FileManager.default.createDirectory(atPath: s.incoming + "/d.csv", withIntermediateDirectories: false)
        try s.put("outside.csv", Scratch.csv(rows: 1))
        try FileManager.default.moveItem(atPath: s.incoming + "/outside.csv", toPath: s.root + "/outside.csv")
        try FileManager.default.createSymbolicLink(atPath: s.incoming + "/e.csv", withDestinationPath: s.root + "/outside.csv")
        try s.put("f.csv", Scratch.csv(rows: 1))

        let run = try WatchRun([s.incoming], stderrPath: s.root + "/err")
        let lines = run.lines(throughMarkerOf: "f.csv")
        #expect(lines.compactMap { kind($0) == "eof" ? file($0) : nil } == ["a.csv", "f.csv"])
        #expect(waitUntilWatching(run))
        try FileManager.default.createSymbolicLink(atPath: s.incoming + "/.g", withDestinationPath: s.root + "/gone")
        #expect(rename(s.incoming + "/.g", s.incoming + "/g.csv") == 0)
        try s.renameIn("h.csv", Scratch.csv(rows: 1))
        #expect(run.lines(throughMarkerOf: "h.csv").count == 2)
        kill(run.process.processIdentifier, SIGINT)
        #expect(run.exitStatus() == 0)
        let err = run.stderr
        #expect(err.contains("watch - ERROR - \(s.incoming)/b.csv: No such file or directory"))
        #expect(err.contains("watch - ERROR - \(s.incoming)/g.csv: No such file or directory"))
        #expect(err.contains("Skipping \(s.incoming)/c.csv: a FIFO, not a regular file"))
        #expect(err.contains("Skipping \(s.incoming)/d.csv: a directory"))
        #expect(err.contains("Skipping \(s.incoming)/e.csv: symlink to "))
    }

    @Test func firstSigintFinishesTheCurrentFileThenExitsZero() throws {
        let s = try Scratch()
        defer { s.remove() }
        try s.put("a_big.csv", Scratch.csv(rows: 200_000))
        try s.put("b_next.csv", Scratch.csv(rows: 10))
        let run = try WatchRun([s.incoming], stderrPath: s.root + "/err")
        guard let first = run.nextLine() else { Issue.record("no output"); return }
        #expect(file(first) == "a_big.csv")
        kill(run.process.processIdentifier, SIGINT)
        var rest: [String] = []
        while let line = run.nextLine(within: 30) { rest.append(line) }
        #expect(run.exitStatus() == 0)
        #expect(rest.count == 200_000)  // the other 199,999 rows and the marker
        #expect(rest.last?.hasPrefix(#"{"kind":"eof","file":"a_big.csv","rows":200000,"#) == true)
        #expect(!rest.contains { file($0) == "b_next.csv" })
        #expect(run.stderr.contains("Stopped by signal"))
    }

    @Test func secondSigintExitsAtOnce() throws {
        let s = try Scratch()
        defer { s.remove() }
        try s.put("big.csv", Scratch.csv(rows: 200_000))
        let run = try WatchRun([s.incoming], stderrPath: s.root + "/err")
        // Nobody reads stdout: watch blocks on a full pipe in the middle of the file.
        guard run.nextLine() != nil else { Issue.record("no output"); return }
        usleep(300_000)
        kill(run.process.processIdentifier, SIGINT)
        usleep(100_000)
        #expect(run.process.isRunning)  // still finishing the file
        kill(run.process.processIdentifier, SIGINT)
        #expect(run.exitStatus(within: 5) == 130)
    }

    @Test func sigintWakesAnIdleWatchPromptly() throws {
        let s = try Scratch()
        defer { s.remove() }
        let run = try WatchRun([s.incoming], stderrPath: s.root + "/err")
        #expect(waitUntilWatching(run))
        let sent = Date()
        kill(run.process.processIdentifier, SIGINT)
        #expect(run.exitStatus(within: 5) == 0)
        #expect(Date().timeIntervalSince(sent) < 1)
    }

    @Test func onceExitsAfterExistingFilesAndFilesReplayInTheOrderGiven() throws {
        let s = try Scratch()
        defer { s.remove() }
        try s.put("a.csv", Scratch.csv(rows: 1))
        try s.put("b.csv", Scratch.csv(rows: 2))
        let once = try WatchRun(["--once", s.incoming], stderrPath: s.root + "/err1")
        var markers: [String] = []
        while let line = once.nextLine() { if kind(line) == "eof" { markers.append(file(line) ?? "?") } }
        #expect(markers == ["a.csv", "b.csv"])
        #expect(once.exitStatus() == 0)

        let replay = try WatchRun([s.incoming + "/b.csv", s.incoming + "/a.csv"], stderrPath: s.root + "/err2")
        markers = []
        while let line = replay.nextLine() { if kind(line) == "eof" { markers.append(file(line) ?? "?") } }
        #expect(markers == ["b.csv", "a.csv"])
        #expect(replay.exitStatus() == 0)
    }

    @Test func folderRemovedIsAnErrorExit() throws {
        let s = try Scratch()
        defer { s.remove() }
        let run = try WatchRun([s.incoming], stderrPath: s.root + "/err")
        #expect(waitUntilWatching(run))
        try FileManager.default.removeItem(atPath: s.incoming)
        #expect(run.exitStatus(within: 5) == 1)
        #expect(run.stderr.contains("watch - ERROR - \(s.incoming): the folder was deleted"))
    }

    @Test func pollModeDetectsANewFile() throws {
        let s = try Scratch()
        defer { s.remove() }
        try s.put("a.csv", Scratch.csv(rows: 1))
        let run = try WatchRun(["--poll", "100ms", s.incoming], stderrPath: s.root + "/err")
        #expect(run.lines(throughMarkerOf: "a.csv").count == 2)
        #expect(waitUntilWatching(run))
        // Written in place, in two parts: polling waits until it holds still.
        let fd = open(s.incoming + "/b.csv", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        let text = Array(Scratch.csv(rows: 5).utf8)
        text[..<100].withUnsafeBytes { _ = write(fd, $0.baseAddress!, $0.count) }
        usleep(50_000)
        text[100...].withUnsafeBytes { _ = write(fd, $0.baseAddress!, $0.count) }
        close(fd)
        let lines = run.lines(throughMarkerOf: "b.csv")
        #expect(lines.count == 6)
        #expect(lines.last?.contains(#""rows":5,"#) == true)
        #expect(run.nextLine(within: 0.5) == nil)  // not sent twice
        kill(run.process.processIdentifier, SIGINT)
        #expect(run.exitStatus() == 0)
    }

    @Test func usageErrorsExit64() throws {
        let s = try Scratch()
        defer { s.remove() }
        let missing = try WatchRun([s.root + "/nope"], stderrPath: s.root + "/err1")
        #expect(missing.exitStatus() == 64)
        #expect(missing.stderr.contains("nope: No such file or directory"))
        let both = try WatchRun(["--journal", "x", "--no-journal", s.incoming], stderrPath: s.root + "/err2")
        #expect(both.exitStatus() == 64)
        let help = try WatchRun(["--help"], stderrPath: s.root + "/err3")
        var text = ""
        while let line = help.nextLine() { text += line + "\n" }
        #expect(help.exitStatus() == 0)
        #expect(text.contains("watch --once bad.csv | validate --summary"))
        #expect(text.contains(".ingest-committed"))
        #expect(text.contains("procps"))
    }
}

private func sha256Hex(_ text: String) -> String {
    // Via sha256sum so the test does not trust the code it checks.
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
    let input = Pipe()
    let output = Pipe()
    p.standardInput = input
    p.standardOutput = output
    try? p.run()
    input.fileHandleForWriting.write(Data(text.utf8))
    try? input.fileHandleForWriting.close()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return String(decoding: data, as: UTF8.self).split(separator: " ").first.map(String.init) ?? ""
}
