import Foundation
import Testing

@testable import Ingest

/// A file appended to while the emitter reads it: the read is torn, so no marker may close it.
@Suite struct TornReadTests {
    @Test func aFileAppendedWhileBeingReadIsAbandonedNotMarked() throws {
        let folder = NSTemporaryDirectory() + "torn-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/a.csv"
        let row = "6f1c2a3b-1111-4222-8333-444455556666,1,2,view,,2024-01-30 10:15:23.123\n"
        try (EventField.csvHeader + "\n" + String(repeating: row, count: 3_000)).write(toFile: path, atomically: true, encoding: .utf8)

        // The emitter's first flush blocks on a small pipe until the reader has appended to the
        // file, so the append lands while the file is being read, every time.
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        _ = fcntl(fds[1], 1031, Int32(4096))  // F_SETPIPE_SZ
        let collected = Collected()
        let done = DispatchSemaphore(value: 0)
        let readEnd = fds[0]
        Thread {
            var ready = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
            _ = poll(&ready, 1, 30_000)
            let fd = open(path, O_WRONLY | O_APPEND)
            let more = Array(String(repeating: row, count: 10).utf8)
            _ = more.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
            close(fd)
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress!, $0.count) }
                if n <= 0 { break }
                collected.append(buffer[0..<n])
            }
            close(readEnd)
            done.signal()
        }.start()

        let output = ByteOutput(fd: fds[1])
        let result = try CSVFileEmitter().emit(path: path, name: "a.csv", seen: nil, into: output)
        try output.flush()
        close(fds[1])
        #expect(done.wait(timeout: .now() + 30) == .success)

        #expect(result.changedWhileReading)
        let lines = String(decoding: collected.bytes, as: UTF8.self).split(separator: "\n")
        #expect(lines.last == #"{"kind":"abandon","file":"a.csv","reason":"changed while being read"}"#)
        #expect(!lines.contains { $0.contains(#""kind":"eof""#) })
    }
}

final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var data: [UInt8] = []
    func append(_ bytes: ArraySlice<UInt8>) {
        lock.lock()
        data += bytes
        lock.unlock()
    }
    var bytes: [UInt8] {
        lock.lock()
        defer { lock.unlock() }
        return data
    }
}
