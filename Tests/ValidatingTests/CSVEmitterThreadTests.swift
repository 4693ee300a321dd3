import Foundation
import Testing

@testable import Ingest
@testable import Validating

/// `validate FILE.csv`'s reader thread: the same lines as the emitter on one thread, handed
/// over in whole-line chunks; failures and an early reader's exit.
@Suite struct CSVEmitterThreadTests {
    @Test(arguments: [(1, 64), (2, 64), (3, 1 << 16), (3, 1)])
    func emitterThreadHandsOverTheSameBytes(_ slots: Int, _ chunkBytes: Int) throws {
        var csv: [UInt8] = Array((EventField.csvHeader + "\n").utf8)
        for i in 0..<2_000 {
            csv += Array("\(i),\(i % 7),\"p,\(i)\",view,,2024-01-30T10:15:23Z\n".utf8)
            if i % 500 == 0 { csv += Array("bad,row\n".utf8) }
        }
        let path = try temporaryFile(csv)
        defer { unlink(path) }
        let direct = try emitLines(path: path, name: "f.csv")
        let thread = try CSVEmitterThread(path: path, name: "f.csv", seen: nil, slotCount: slots, chunkBytes: chunkBytes)
        var bytes: [UInt8] = []
        var chunks = 0
        while thread.withNextChunk({ chunk in
            #expect(chunk.last == 0x0A, "a chunk holds whole lines")
            bytes += chunk
            chunks += 1
        }) {}
        let emitted = try thread.finish()
        #expect(emitted.records == 2_000 && emitted.rejects == 4)
        #expect(chunkBytes > 1 << 15 || chunks > 100)
        #expect(lines(bytes) == direct)
    }

    @Test func emitterThreadReportsAFileThatCannotBeOpened() throws {
        let thread = try CSVEmitterThread(path: "/nonexistent/x.csv", name: "x.csv", seen: nil)
        #expect(!thread.withNextChunk { _ in Issue.record("no chunk expected") })
        #expect(throws: SystemError.self) { try thread.finish() }
    }

    @Test func emitterThreadStopsWhenItsReaderGoesAway() throws {
        var csv: [UInt8] = Array((EventField.csvHeader + "\n").utf8)
        for i in 0..<20_000 { csv += Array("\(i),1,2,view,,2024-01-30T10:15:23Z\n".utf8) }
        let path = try temporaryFile(csv)
        defer { unlink(path) }
        var thread: CSVEmitterThread? = try CSVEmitterThread(path: path, name: "f.csv", seen: nil, slotCount: 1, chunkBytes: 256)
        var sawChunk = false
        _ = thread?.withNextChunk { sawChunk = !$0.isEmpty }
        #expect(sawChunk)
        thread = nil  // deinit cancels the blocked emitter and joins it: returning at all is the test
        #expect(thread == nil)
    }
}

private func emitLines(path: String, name: String) throws -> [String] {
    var bytes: [UInt8] = []
    let output = ByteOutput { bytes += $0 }
    _ = try CSVFileEmitter().emit(path: path, name: name, seen: nil, into: output)
    try output.flush()
    return lines(bytes)
}

private func lines(_ bytes: [UInt8]) -> [String] {
    bytes.split(separator: 0x0A).map { String(decoding: $0, as: UTF8.self) }
}

private func temporaryFile(_ bytes: [UInt8]) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("emit-\(UUID().uuidString).csv").path
    #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
    return path
}
