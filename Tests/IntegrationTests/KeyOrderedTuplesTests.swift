import Foundation
import Ingest
import Postgres
import TestSupport
import Testing

@testable import Loading

/// A batch's binary tuples go to COPY sorted by their key's first column, a window at a time,
/// and nothing is lost, doubled or cut on the way.
@Suite struct KeyOrderedTuplesTests {
    let load = Executables.url("load")

    /// A binary COPY tuple of `fields` (nil: NULL), as `CopyBinary` lays it out.
    static func tuple(_ fields: [[UInt8]?]) -> [UInt8] {
        var out: [UInt8] = [UInt8(fields.count >> 8), UInt8(fields.count & 0xFF)]
        for field in fields {
            let length = UInt32(bitPattern: Int32(field?.count ?? -1))
            out += [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: length >> $0) }
            out += field ?? []
        }
        return out
    }

    /// Splits a stream of tuples of `fieldCount` fields back into tuples.
    static func split(_ bytes: [UInt8], fieldCount: Int) -> [[UInt8]] {
        var tuples: [[UInt8]] = []
        var at = 0
        while at < bytes.count {
            let start = at
            at += 2
            for _ in 0..<fieldCount {
                let length = Int(Int32(bitPattern: bytes[at..<at + 4].reduce(0) { $0 << 8 | UInt32($1) }))
                at += 4 + max(length, 0)
            }
            tuples.append(Array(bytes[start..<at]))
        }
        return tuples
    }

    /// Sends `tuples` through a `KeyOrderedTuples` in chunks of `cut` bytes; what came out.
    static func reorder(_ tuples: [[UInt8]], keyField: Int, window: Int, cut: Int) throws -> [UInt8] {
        var ordered = KeyOrderedTuples(keyField: keyField, window: window)
        var sent: [UInt8] = []
        let all = tuples.flatMap { $0 }
        try all.withUnsafeBytes { raw in
            var start = 0
            while start < raw.count {
                let end = min(start + cut, raw.count)
                try ordered.feed(UnsafeRawBufferPointer(rebasing: raw[start..<end])) { sent.append(contentsOf: $0) }
                start = end
            }
        }
        try ordered.finish { sent.append(contentsOf: $0) }
        return sent
    }

    /// Text keys sharing a 10-byte prefix (so the first 8 bytes tie), in the second field,
    /// beside NULLs, and one key that is a prefix of another.
    static func textKeyed(_ count: Int) -> (tuples: [[UInt8]], keys: [[UInt8]]) {
        var keys = (0..<count).map { Array("order-0000\(String(($0 * 7919) % 100_003, radix: 16))".utf8) }
        keys.append(Array("order".utf8))
        let tuples = keys.enumerated().map { n, key in
            tuple([Array("\(n)".utf8), key, n % 3 == 0 ? nil : [UInt8(n & 0xFF)], []])
        }
        return (tuples, keys)
    }

    @Test func aWholeBatchInOneWindowComesOutInBytewiseKeyOrder() throws {
        let (tuples, keys) = Self.textKeyed(500)
        let expected = zip(keys, tuples).sorted { $0.0.lexicographicallyPrecedes($1.0) }.map(\.1)
        for cut in [1, 3, 7, 64, 1000, 1 << 20] {
            let sent = try Self.reorder(tuples, keyField: 1, window: 1 << 20, cut: cut)
            #expect(Self.split(sent, fieldCount: 4) == expected, "chunks of \(cut)")
        }
    }

    @Test func smallWindowsAreEachSortedAndTogetherHoldEveryTupleOnce() throws {
        let (tuples, _) = Self.textKeyed(3000)
        let window = 4096
        let sent = Self.split(try Self.reorder(tuples, keyField: 1, window: window, cut: 333), fieldCount: 4)
        #expect(sent.count == tuples.count)
        #expect(Set(sent) == Set(tuples))
        // Each window is one ascending run: the runs number about bytes / window, not rows.
        let keys = sent.map { Self.field(1, of: $0) }
        let descents = zip(keys, keys.dropFirst()).filter { $1.lexicographicallyPrecedes($0) }.count
        let bytes = tuples.reduce(0) { $0 + $1.count }
        #expect(descents > 0 && descents <= bytes / window + 1, "\(descents) descents for \(bytes) bytes")
    }

    @Test func aTupleBiggerThanTheWindowPassesWhole() throws {
        let big = Self.tuple([Array(repeating: UInt8(ascii: "m"), count: 20_000), [1]])
        let tuples = [Self.tuple([Array("z".utf8), [2]]), big, Self.tuple([Array("a".utf8), nil])]
        let sent = Self.split(try Self.reorder(tuples, keyField: 0, window: 4096, cut: 1000), fieldCount: 2)
        #expect(sent == [tuples[2], big, tuples[0]])
    }

    @Test func aStreamEndingInsideATupleIsAnErrorNotASilentCut() throws {
        let whole = Self.tuple([Array("key".utf8), [1, 2, 3]])
        var ordered = KeyOrderedTuples(keyField: 0, window: 4096)
        try whole.dropLast(2).withUnsafeBytes { try ordered.feed($0) { _ in } }
        #expect(throws: KeyOrderedTuples.CutTuple.self) { try ordered.finish { _ in } }
    }

    /// Field `n` of a tuple's bytes.
    static func field(_ n: Int, of tuple: [UInt8]) -> [UInt8] {
        var at = 2
        for k in 0...n {
            let length = Int(Int32(bitPattern: tuple[at..<at + 4].reduce(0) { $0 << 8 | UInt32($1) }))
            at += 4
            if k == n { return length < 0 ? [] : Array(tuple[at..<at + length]) }
            at += max(length, 0)
        }
        return []
    }

    /// Through `load`: one file's rows land in the heap in event_id order (the server's uuid
    /// order is bytewise), every row once.
    @Test func loadWritesABatchInKeyOrder() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let lines = try f.file("ordered.csv", valid: 2000, rejects: 3)
            let result = try runTool(load, f.arguments(db), stdin: stdinData(lines))
            #expect(result.status == 0, "\(result.stderr)")
            let physical = try db.query("SELECT event_id::text FROM ecommerce_events ORDER BY ctid").map { $0[0] ?? "" }
            #expect(physical.count == 2000)
            #expect(Set(physical) == Set(f.validIDs))
            #expect(physical == physical.sorted(), "rows not in key order")
            #expect(physical != f.validIDs, "arrival order was already sorted: the test proves nothing")
        }
    }
}
