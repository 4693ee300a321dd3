import Foundation
import Testing

@testable import Ingest
@testable import Watching

private func temporaryFolder() throws -> String {
    let path = NSTemporaryDirectory() + "watch-unit-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite struct WatchJournalTests {
    @Test func appendedMarkersLoadBackByName() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let journal = CommittedJournal(path: folder + "/.ingest-committed")
        #expect(try journal.load().isEmpty)  // missing journal: nothing committed

        let a = String(repeating: "a", count: 64)
        let b = String(repeating: "b", count: 64)
        try journal.append(FileFingerprint(name: "batch_1.csv", bytes: 100, sha256: a))
        try journal.append(FileFingerprint(name: "batch \"2\".csv", bytes: 7, sha256: b, inode: 12, modifiedNanoseconds: 34))
        let entries = try journal.load()
        #expect(entries.count == 2)
        #expect(entries["batch_1.csv"]?.bytes == 100)
        #expect(entries["batch_1.csv"]?.sha256 == a)
        #expect(entries["batch \"2\".csv"]?.bytes == 7)

        let text = try String(contentsOfFile: journal.path, encoding: .utf8)
        #expect(text.hasPrefix(#"{"file":"batch_1.csv","bytes":100,"sha256":"\#(a)"}"# + "\n"))
    }

    @Test func laterEntryForTheSameNameWins() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let journal = CommittedJournal(path: folder + "/j", synchronous: true)
        try journal.append(FileFingerprint(name: "x.csv", bytes: 1, sha256: String(repeating: "1", count: 64)))
        try journal.append(FileFingerprint(name: "x.csv", bytes: 2, sha256: String(repeating: "2", count: 64)))
        #expect(try journal.load()["x.csv"]?.bytes == 2)
    }

    @Test func cutOffAndStrayLinesAreSkipped() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/j"
        let good = #"{"file":"ok.csv","bytes":5,"sha256":"\#(String(repeating: "c", count: 64))"}"#
        try (good + "\nnot json\n{\"file\":\"short.csv\",\"bytes\":5,\"sha256\":\"abc\"}\n{\"file\":\"cut.csv\",\"by")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let entries = try CommittedJournal(path: path).load()
        #expect(Array(entries.keys) == ["ok.csv"])
    }

    @Test func fileHashMatchesTheEmittersMarker() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/a.csv"
        let body =
            "event_id,user_id,product_id,event_type,price,event_timestamp\n"
            + String(
                repeating: "1,2,3,view,,2024-01-30 10:15:23.123\n", count: 5000)
        try body.write(toFile: path, atomically: true, encoding: .utf8)
        let output = ByteOutput(fd: open("/dev/null", O_WRONLY))
        defer { close(output.fd) }
        let emitted = try CSVFileEmitter().emit(path: path, name: "a.csv", seen: nil, into: output)
        let hashed = try FileDigest.of(path: path)
        #expect(hashed.bytes == emitted.marker.bytes)
        #expect(hashed.sha256 == emitted.marker.sha256)
        #expect(hashed.bytes == Int64(body.utf8.count))
    }
}

@Suite struct WatchSelectionTests {
    @Test(arguments: [
        ("batch_20240130_101523_000042.csv", true),
        ("a.csv", true),
        ("a.CSV", false),  // fnmatch is case-sensitive, like the shell
        ("notes.txt", false),
        (".batch.csv", false),
        (".ingest-committed", false),
        ("batch.csv.tmp", false),
        ("batch.csv.part", false),
        ("batch.csv~", false),
        ("batch.tmp", false),
        ("", false),
    ])
    func defaultPatternSkipsHiddenAndTemporaryNames(name: String, expected: Bool) {
        #expect(FileSelection().matches(name) == expected)
    }

    @Test func customPatternStillNeverMatchesHiddenOrTemporary() {
        let selection = FileSelection(glob: "*")
        #expect(selection.matches("anything"))
        #expect(!selection.matches(".hidden"))
        #expect(!selection.matches("upload.part"))
        #expect(FileSelection(glob: "orders_*.csv").matches("orders_1.csv"))
        #expect(!FileSelection(glob: "orders_*.csv").matches("returns_1.csv"))
    }

    @Test func candidatesAreInByteOrderAndInspectionSortsOutNonFiles() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let outside = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: outside) }
        let fm = FileManager.default
        for name in ["b.csv", "B.csv", "a10.csv", "a2.csv", "é.csv", ".h.csv", "t.csv.tmp", "notes.txt"] {
            fm.createFile(atPath: folder + "/" + name, contents: Data("x\n".utf8))
        }
        try fm.createDirectory(atPath: folder + "/dir.csv", withIntermediateDirectories: false)
        fm.createFile(atPath: outside + "/secret.csv", contents: Data("x\n".utf8))
        try fm.createSymbolicLink(atPath: folder + "/out.csv", withDestinationPath: outside + "/secret.csv")
        try fm.createSymbolicLink(atPath: folder + "/in.csv", withDestinationPath: "b.csv")
        try fm.createSymbolicLink(atPath: folder + "/dangling.csv", withDestinationPath: folder + "/nope")
        #expect(mkfifo(folder + "/fifo.csv", 0o644) == 0)

        let watched = try WatchedFolder(path: folder + "/", selection: FileSelection())
        #expect(watched.path == folder)
        #expect(
            try watched.candidateNames() == [
                "B.csv", "a10.csv", "a2.csv", "b.csv", "dangling.csv", "dir.csv", "fifo.csv", "in.csv", "out.csv", "é.csv",
            ])

        func kind(_ name: String) -> String {
            switch watched.inspect(name) {
            case .file: "file"
            case .skip(let why): "skip: " + why
            case .failure(let error): "failure: \(error.errno)"
            }
        }
        #expect(kind("b.csv") == "file")
        #expect(kind("in.csv") == "file")
        #expect(kind("dir.csv") == "skip: a directory")
        #expect(kind("fifo.csv") == "skip: a FIFO, not a regular file")
        #expect(kind("out.csv").hasPrefix("skip: symlink to "))
        #expect(kind("dangling.csv") == "failure: \(ENOENT)")
        #expect(kind("gone.csv") == "failure: \(ENOENT)")
    }

    @Test func identityChangesWhenAFileIsReplaced() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let watched = try WatchedFolder(path: folder, selection: FileSelection())
        try "one\n".write(toFile: folder + "/a.csv", atomically: false, encoding: .utf8)
        guard case .file(let first) = watched.inspect("a.csv") else { Issue.record("not a file"); return }
        guard case .file(let again) = watched.inspect("a.csv") else { Issue.record("not a file"); return }
        #expect(first == again)
        try "two!\n".write(toFile: folder + "/.a.tmp", atomically: false, encoding: .utf8)
        #expect(rename(folder + "/.a.tmp", folder + "/a.csv") == 0)
        guard case .file(let replaced) = watched.inspect("a.csv") else { Issue.record("not a file"); return }
        #expect(replaced != first)
    }

    @Test func fileOpenForWritingIsDetected() throws {
        #if os(Linux)
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/w.csv"
        let fd = open(path, O_WRONLY | O_CREAT, 0o644)
        #expect(fd >= 0)
        #expect(isOpenForWriting(path: path) == true)
        close(fd)
        #expect(isOpenForWriting(path: path) == false)
        #endif
    }

    #if os(Linux)
    @Test func inotifyEventsAreDecodedFromOneBuffer() throws {
        var raw: [UInt8] = []
        func event(mask: UInt32, name: String, padTo: Int) {
            var header = [Int32(1)].withUnsafeBytes { Array($0) }
            header += [mask].withUnsafeBytes { Array($0) }
            header += [UInt32(0)].withUnsafeBytes { Array($0) }
            header += [UInt32(padTo)].withUnsafeBytes { Array($0) }
            raw += header
            var bytes = Array(name.utf8)
            bytes += [UInt8](repeating: 0, count: padTo - bytes.count)
            raw += bytes
        }
        event(mask: UInt32(IN_MOVED_TO), name: "a.csv", padTo: 16)
        event(mask: UInt32(IN_CLOSE_WRITE), name: "batch_0001.csv", padTo: 32)
        event(mask: UInt32(IN_Q_OVERFLOW), name: "", padTo: 0)
        event(mask: UInt32(IN_DELETE_SELF), name: "", padTo: 0)
        let events = raw.withUnsafeBytes { DirectoryEvents.parse($0) }
        #expect(events == [.completed("a.csv"), .completed("batch_0001.csv"), .overflow, .folderGone("the folder was deleted")])
    }

    @Test func inotifyReportsARenameIntoTheFolder() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let events = try DirectoryEvents(path: folder)
        try "x\n".write(toFile: folder + "/.a.tmp", atomically: false, encoding: .utf8)
        #expect(rename(folder + "/.a.tmp", folder + "/a.csv") == 0)
        let seen = try events.read()
        #expect(seen.contains(.completed("a.csv")))
        #expect(seen.contains(.completed(".a.tmp")))  // filtered later, by FileSelection
    }
    #endif
}
