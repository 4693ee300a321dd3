import Foundation
import Testing

@testable import Loading

/// A spool gives back exactly the bytes written to it, in memory, on disk, and in a file
/// another spool used before (spool files are reused without truncation).
@Suite struct SpoolTests {
    static func lines(_ prefix: String, _ count: Int, width: Int) -> [[UInt8]] {
        (0..<count).map { i in Array("\(prefix)-\(i)-".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: width) }
    }

    static func read(_ spool: Spool) throws -> (lines: [[UInt8]], bytes: [UInt8]) {
        var lines: [[UInt8]] = []
        try spool.forEachLine { lines.append(Array($0)) }
        var bytes: [UInt8] = []
        try spool.forEachChunk { bytes.append(contentsOf: $0) }
        return (lines, bytes)
    }

    @Test func aReusedFileYieldsOnlyTheNewSpoolsBytes() throws {
        let directory = NSTemporaryDirectory() + "spool-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }

        // A long spool first: it spills to a file, which goes back to the pool when it ends.
        do {
            let first = Spool(memoryLimit: 1 << 10, directory: directory)
            let long = Self.lines("first", 3_000, width: 90)
            for line in long { try line.withUnsafeBytes { try first.appendLine($0) } }
            let back = try Self.read(first)
            #expect(back.lines == long)
            #expect(first.residentBytes < 1 << 17, "on disk, it keeps little in memory")
        }
        // A short one in the same directory reuses that file: none of the old bytes show.
        let second = Spool(memoryLimit: 1 << 10, directory: directory)
        let short = Self.lines("second", 40, width: 50)
        for line in short.prefix(30) { try line.withUnsafeBytes { try second.appendLine($0) } }
        var back = try Self.read(second)
        #expect(back.lines == Array(short.prefix(30)))
        // Appending after a read goes on where the spool's bytes end, not the file's.
        for line in short.dropFirst(30) { try line.withUnsafeBytes { try second.appendLine($0) } }
        back = try Self.read(second)
        #expect(back.lines == short)
        #expect(back.bytes == short.flatMap { $0 + [0x0A] })
        #expect(second.lineCount == 40)
    }

    @Test func rawAppendsKeepWhatTheWriterStored() throws {
        let spool = Spool(memoryLimit: 1 << 10, directory: NSTemporaryDirectory())
        var expected: [UInt8] = []
        for i in 0..<500 {
            let value = UInt8(truncatingIfNeeded: i)
            try spool.append(atMost: 64) { at in
                for k in 0..<(i % 17) { at.storeBytes(of: value &+ UInt8(k), toByteOffset: k, as: UInt8.self) }
                return i % 17
            }
            expected += (0..<(i % 17)).map { value &+ UInt8($0) }
        }
        #expect(try Self.read(spool).bytes == expected)
        #expect(spool.byteCount == expected.count)
    }

    /// Reads at any offset give the bytes there, across the line between disk and memory.
    @Test func readsAtAnOffsetGiveTheBytesThereOnDiskAndInMemory() throws {
        let spool = Spool(memoryLimit: 0, directory: NSTemporaryDirectory())
        let expected = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 * 7 + $0 / 251) }
        var at = 0
        while at < expected.count {
            let count = min(777, expected.count - at)
            try spool.append(atMost: count) { p in
                expected[at..<(at + count)].withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: count) }
                return count
            }
            at += count
        }
        #expect(spool.unwrittenBytes > 0 && spool.unwrittenBytes < expected.count, "some on disk, some in memory")
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 5_000, alignment: 1)
        defer { buffer.deallocate() }
        for (offset, count) in [(0, 5_000), (99_000, 5_000), (expected.count - spool.unwrittenBytes - 10, 20), (12_345, 1), (100_000, 10)] {
            let n = try spool.read(at: offset, into: buffer, count: count)
            #expect(n == min(count, expected.count - offset))
            #expect(Array(UnsafeRawBufferPointer(start: buffer, count: n)) == Array(expected[offset..<(offset + n)]), "at \(offset)")
        }
    }
}
