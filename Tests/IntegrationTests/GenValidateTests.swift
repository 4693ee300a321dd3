import Foundation
import Testing

/// What a finished process left behind.
struct Finished {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a built executable with arguments and optional stdin bytes; waits for it.
func run(_ name: String, _ arguments: [String], stdin: Data? = nil) throws -> Finished {
    let process = Process()
    process.executableURL = Executables.url(name)
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let input = Pipe()
    process.standardInput = stdin == nil ? FileHandle.nullDevice : input
    try process.run()
    if let stdin {
        try input.fileHandleForWriting.write(contentsOf: stdin)
        try input.fileHandleForWriting.close()
    }
    // Read both pipes before waiting, so a full pipe cannot block the child.
    let errBox = DataBox()
    let group = DispatchGroup()
    DispatchQueue.global().async(group: group) { errBox.data = err.fileHandleForReading.readDataToEndOfFile() }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    let errData = errBox.data
    process.waitUntilExit()
    return Finished(
        status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData, as: UTF8.self))
}

/// Written by one reader thread, read after `group.wait()`.
final class DataBox: @unchecked Sendable {
    var data = Data()
}

func temporaryFolder() -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("gen-validate-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

struct ManifestEntry: Decodable {
    var file: String?
    var rows: Int
    var valid: Int
    var invalid: Int
    // swift-format-ignore: AlwaysUseLowerCamelCase
    var valid_event_ids: [String]  // the manifest's own key
    // swift-format-ignore: AlwaysUseLowerCamelCase
    var invalid_lines: [InvalidLine]
    struct InvalidLine: Decodable {
        var line: Int
        var rule: String
    }
}

func readManifest(_ url: URL) throws -> [ManifestEntry] {
    try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map {
        try JSONDecoder().decode(ManifestEntry.self, from: Data($0.utf8))
    }
}

func jsonLines(_ text: String) -> [[String: Any]] {
    text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
}

@Suite(.serialized) struct GenValidateTests {
    @Test func genFilesThenValidateThemMatchesTheManifest() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let manifest = folder.appendingPathComponent("manifest.ndjson")
        let out = folder.appendingPathComponent("incoming")
        let gen = try run(
            "gen",
            [
                "--files", "3", "--seed", "1", "--interval", "0", "--invalid-rate", "0.2", "--out", out.path,
                "--manifest", manifest.path,
            ])
        #expect(gen.status == 0, "\(gen.stderr)")
        #expect(gen.stderr.contains(" - INFO - Generated batch of 50 events"))
        #expect(gen.stderr.contains(" - INFO - Written to: \(out.path)/batch_"))
        let entries = try readManifest(manifest)
        #expect(entries.count == 3)
        let files = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
        #expect(files == entries.map { $0.file! }.sorted())
        #expect(files.allSatisfy { $0.range(of: #"^batch_\d{8}_\d{6}_\d{6}\.csv$"#, options: .regularExpression) != nil })

        let validate = try run("validate", ["--summary"] + files.map { out.appendingPathComponent($0).path })
        #expect(validate.status == 0, "\(validate.stderr)")
        let lines = jsonLines(validate.stdout)
        for entry in entries {
            let ofFile = lines.filter { $0["file"] as? String == entry.file }
            let records = ofFile.filter { $0["kind"] as? String == "record" }
            let rejects = ofFile.filter { $0["kind"] as? String == "reject" }
            #expect(records.count == entry.valid)
            #expect(rejects.count == entry.invalid)
            #expect(Set(records.compactMap { $0["event_id"] as? String }) == Set(entry.valid_event_ids))
            #expect(Set(rejects.compactMap { $0["line"] as? Int }) == Set(entry.invalid_lines.map(\.line)))
            #expect(ofFile.last?["kind"] as? String == "eof")
            #expect(ofFile.last?["rows"] as? Int == 50)
        }
        let valid = entries.map(\.valid).reduce(0, +)
        let invalid = entries.map(\.invalid).reduce(0, +)
        #expect(validate.stderr.hasPrefix("rows in   150\nvalid     \(valid)\nrejected  \(invalid)\n"))
    }

    @Test func genStdoutThroughARealPipeIntoValidate() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let manifest = folder.appendingPathComponent("manifest.ndjson")
        let gen = Process()
        gen.executableURL = Executables.url("gen")
        gen.arguments = [
            "--stdout", "--files", "2", "--seed", "1", "--interval", "0", "--invalid-rate", "0.2", "--manifest", manifest.path,
        ]
        let validate = Process()
        validate.executableURL = Executables.url("validate")
        validate.arguments = ["--summary"]
        let pipe = Pipe()
        let out = Pipe()
        let err = Pipe()
        gen.standardOutput = pipe
        gen.standardError = FileHandle.nullDevice
        validate.standardInput = pipe
        validate.standardOutput = out
        validate.standardError = err
        try gen.run()
        try validate.run()
        try pipe.fileHandleForWriting.close()
        try pipe.fileHandleForReading.close()
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        gen.waitUntilExit()
        validate.waitUntilExit()
        #expect(gen.terminationStatus == 0)
        #expect(validate.terminationStatus == 0)
        let entries = try readManifest(manifest)
        #expect(entries.count == 2 && entries.allSatisfy { $0.file == nil })
        let lines = jsonLines(stdout)
        let records = lines.filter { $0["kind"] as? String == "record" }
        #expect(records.count == entries.map(\.valid).reduce(0, +))
        #expect(lines.filter { $0["kind"] as? String == "reject" }.count == entries.map(\.invalid).reduce(0, +))
        #expect(Set(records.compactMap { $0["event_id"] as? String }) == Set(entries.flatMap(\.valid_event_ids)))
        #expect(stderr.hasPrefix("rows in   100\n"))
    }

    @Test func validateRejectsOnlyAndMalformedLines() throws {
        let input = """
            {"event_id":"6f1c2a3b-1111-4222-8333-444455556666","user_id":1,"product_id":2,"event_type":"view","event_timestamp":"2020-01-01T00:00:00Z"}
            this is not json
            {"event_id":"x","user_id":1,"product_id":2,"event_type":"view","event_timestamp":"2020-01-01T00:00:00Z"}

            """
        let result = try run("validate", ["--rejects-only", "--summary"], stdin: Data(input.utf8))
        #expect(result.status == 0)
        let lines = jsonLines(result.stdout)
        #expect(lines.count == 2)
        #expect(lines[0]["input_line"] as? Int == 2)
        #expect(lines[1]["event_id"] as? String == "x")
        #expect(
            result.stderr == """
                rows in   3
                valid     1
                rejected  2
                      1  event_id: not a UUID
                      1  malformed JSON

                """)
    }

    @Test func overlongLineBecomesARejectAndTheStreamContinues() throws {
        let long = "{\"a\":\"" + String(repeating: "x", count: 5000) + "\"}\n"
        let input = long + "{\"kind\":\"other\"}\n"
        let result = try run("validate", ["--max-line-bytes", "1000"], stdin: Data(input.utf8))
        #expect(result.status == 0)
        let lines = jsonLines(result.stdout)
        #expect(lines.count == 2)
        #expect(lines[0]["kind"] as? String == "reject")
        #expect(result.stdout.contains("line longer than 1000 bytes"))
        #expect(lines[1]["kind"] as? String == "other")
    }

    @Test(arguments: ["gen", "validate"])
    func helpExitsZero(_ tool: String) throws {
        let result = try run(tool, ["--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("USAGE:"))
    }

    @Test func badUsageExits64() throws {
        #expect(try run("gen", ["--interval", "soon"]).status == 64)
        #expect(try run("validate", ["--max-future", "x"]).status == 64)
    }

    @Test func genBadFolderIsOneLineNamingIt() throws {
        let result = try run("gen", ["--files", "1", "--interval", "0", "--out", "/proc/forbidden/incoming"])
        #expect(result.status != 0)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1)
        #expect(result.stderr.contains("/proc/forbidden/incoming"))
    }

    @Test func validateMissingFileExitsOneNamingIt() throws {
        let result = try run("validate", ["/nonexistent/batch.csv"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("/nonexistent/batch.csv"))
    }

    /// `validate FILE.csv` runs the CSV emitter on a thread of its own: its output must stay
    /// line for line what `watch --once | validate` writes, over files of many chunks, and a
    /// file that cannot be read in between must not stop the others.
    @Test func validateFilesWritesWhatWatchPipedIntoValidateWrites() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let out = folder.appendingPathComponent("incoming")
        let gen = try run(
            "gen",
            ["--files", "2", "--rows-per-file", "3000", "--seed", "5", "--interval", "0", "--invalid-rate", "0.1", "--out", out.path])
        #expect(gen.status == 0, "\(gen.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".csv") }.sorted()
        #expect(files.count == 2)
        let watch = try run("watch", ["--once", out.path])
        #expect(watch.status == 0, "\(watch.stderr)")
        // Through files, not `run`'s stdin: it writes all of stdin before reading stdout.
        let watched = folder.appendingPathComponent("watched.ndjson")
        let validated = folder.appendingPathComponent("validated.ndjson")
        try Data(watch.stdout.utf8).write(to: watched)
        let piped = Process()
        piped.executableURL = Executables.url("validate")
        piped.arguments = []
        piped.standardInput = try FileHandle(forReadingFrom: watched)
        _ = FileManager.default.createFile(atPath: validated.path, contents: nil)
        piped.standardOutput = try FileHandle(forWritingTo: validated)
        piped.standardError = FileHandle.nullDevice
        try piped.run()
        piped.waitUntilExit()
        #expect(piped.terminationStatus == 0)
        let pipedOutput = try String(contentsOf: validated, encoding: .utf8)
        let paths = files.map { out.appendingPathComponent($0).path }
        let direct = try run("validate", [paths[0], "/nonexistent/x.csv", paths[1]])
        #expect(direct.status == 1)
        #expect(direct.stderr.contains("/nonexistent/x.csv"))
        func withoutSeen(_ text: String) -> String {
            text.replacingOccurrences(of: #""seen":"[^"]*""#, with: "", options: .regularExpression)
        }
        #expect(jsonLines(direct.stdout).count == 6_002)
        #expect(withoutSeen(direct.stdout) == withoutSeen(pipedOutput))
    }

    @Test func sigintToGenFinishesTheFileAndExitsZero() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let gen = Process()
        gen.executableURL = Executables.url("gen")
        gen.arguments = ["--out", folder.path, "--interval", "0", "--rows-per-file", "2000", "--seed", "2"]
        let err = Pipe()
        gen.standardError = err
        gen.standardOutput = FileHandle.nullDevice
        try gen.run()
        Thread.sleep(forTimeInterval: 0.7)
        kill(gen.processIdentifier, SIGINT)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        gen.waitUntilExit()
        #expect(gen.terminationReason == .exit)
        #expect(gen.terminationStatus == 0)
        #expect(stderr.contains("Total: "))
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path)
        #expect(!names.isEmpty)
        #expect(names.allSatisfy { !$0.hasSuffix(".tmp") })
        for name in names {
            let text = try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
            #expect(text.split(separator: "\n").count == 2001)  // header + every row: no partial file
        }
    }

    @Test func sigintDuringTheIntervalSleepIsPrompt() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let gen = Process()
        gen.executableURL = Executables.url("gen")
        gen.arguments = ["--out", folder.path, "--interval", "1h"]
        gen.standardError = FileHandle.nullDevice
        try gen.run()
        Thread.sleep(forTimeInterval: 0.5)
        let sent = Date()
        kill(gen.processIdentifier, SIGTERM)
        gen.waitUntilExit()
        #expect(gen.terminationStatus == 0)
        #expect(Date().timeIntervalSince(sent) < 2)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).count == 1)
    }

    @Test func validateDrainsAfterTheFirstSignalAndExitsOnTheSecond() throws {
        let validate = Process()
        validate.executableURL = Executables.url("validate")
        let input = Pipe()
        let out = Pipe()
        validate.standardInput = input
        validate.standardOutput = out
        validate.standardError = FileHandle.nullDevice
        try validate.run()
        let record = #"{"kind":"other","n":1}"# + "\n"
        try input.fileHandleForWriting.write(contentsOf: Data(record.utf8))
        Thread.sleep(forTimeInterval: 0.3)
        kill(validate.processIdentifier, SIGINT)
        Thread.sleep(forTimeInterval: 0.2)
        #expect(validate.isRunning)  // first signal: keeps draining
        try input.fileHandleForWriting.write(contentsOf: Data(record.utf8))
        try input.fileHandleForWriting.close()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        validate.waitUntilExit()
        #expect(validate.terminationStatus == 0)
        #expect(text == record + record)

        let second = Process()
        second.executableURL = Executables.url("validate")
        let input2 = Pipe()
        second.standardInput = input2
        second.standardOutput = FileHandle.nullDevice
        try second.run()
        Thread.sleep(forTimeInterval: 0.3)
        kill(second.processIdentifier, SIGINT)
        Thread.sleep(forTimeInterval: 0.1)
        kill(second.processIdentifier, SIGINT)
        second.waitUntilExit()
        #expect(second.terminationStatus == 130)
        try? input2.fileHandleForWriting.close()
    }

    @Test func aQuietStreamIsNotHeldBack() throws {
        let validate = Process()
        validate.executableURL = Executables.url("validate")
        let input = Pipe()
        let out = Pipe()
        validate.standardInput = input
        validate.standardOutput = out
        validate.standardError = FileHandle.nullDevice
        try validate.run()
        // No end-of-file marker: only the "input not ready" flush can deliver this.
        let marker = ""
        let record = #"{"kind":"other","n":1}"# + "\n"
        try input.fileHandleForWriting.write(contentsOf: Data((record + marker).utf8))
        // stdin stays open: the lines must arrive anyway.
        let box = DataBox()
        let arrived = DispatchSemaphore(value: 0)
        let reader = out.fileHandleForReading
        Thread.detachNewThread {
            var data = Data()
            while data.count < record.utf8.count + marker.utf8.count {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                data.append(chunk)
            }
            box.data = data
            arrived.signal()
        }
        #expect(arrived.wait(timeout: .now() + 5) == .success)
        #expect(String(decoding: box.data, as: UTF8.self) == record + marker)
        try input.fileHandleForWriting.close()
        validate.waitUntilExit()
        #expect(validate.terminationStatus == 0)
    }
}
