import Foundation
import Generating
import Ingest
import Postgres
import TestSupport
import Testing

@testable import Loading

/// A batch's binary tuples go to COPY sorted by their key's first column (runs sorted on
/// arrival, merged), and nothing is lost, doubled or cut on the way.
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

    /// Keeps each list of `files` in a `TupleRuns` with runs of `runBytes`, then merges them
    /// all as one batch's COPY would; what came out.
    static func reorder(_ files: [[[UInt8]]], keyField: Int?, runBytes: Int) throws -> [UInt8] {
        let directory = NSTemporaryDirectory()
        let runs = try files.map { tuples in
            let held = TupleRuns(keyField: keyField, runBytes: runBytes, directory: directory)
            for tuple in tuples {
                try held.append(atMost: tuple.count) { at in
                    tuple.withUnsafeBytes { at.copyMemory(from: $0.baseAddress!, byteCount: tuple.count) }
                    return tuple.count
                }
            }
            return held
        }
        var sent: [UInt8] = []
        if let keyField {
            var ordered = KeyOrderedTuples(keyField: keyField)
            try ordered.send(runs) { sent.append(contentsOf: $0) }
        } else {
            for held in runs { try held.forEachChunk { sent.append(contentsOf: $0) } }
        }
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

    @Test func runsMergedComeOutInBytewiseKeyOrder() throws {
        let (tuples, keys) = Self.textKeyed(500)
        let expected = zip(keys, tuples).sorted { $0.0.lexicographicallyPrecedes($1.0) }.map(\.1)
        let bytes = tuples.reduce(0) { $0 + $1.count }
        // One run in memory; runs on disk (up to the fan-in) and one in memory; two files.
        for runBytes in [1 << 20, bytes / (KeyOrderedTuples.fanIn - 1) + 1] {
            #expect(
                Self.split(try Self.reorder([tuples], keyField: 1, runBytes: runBytes), fieldCount: 4) == expected, "runs of \(runBytes)")
        }
        let halves = [Array(tuples[..<200]), Array(tuples[200...])]
        #expect(Self.split(try Self.reorder(halves, keyField: 1, runBytes: bytes / 12), fieldCount: 4) == expected)
    }

    @Test func moreRunsThanTheFanInAreMergedInGroupsHoldingEveryTupleOnce() throws {
        let (tuples, _) = Self.textKeyed(3000)
        let runBytes = 1024
        let sent = Self.split(try Self.reorder([tuples], keyField: 1, runBytes: runBytes), fieldCount: 4)
        #expect(sent.count == tuples.count)
        #expect(Set(sent) == Set(tuples))
        // Each merge of 16 runs is one ascending sequence: they number about runs / 16.
        let keys = sent.map { Self.field(1, of: $0) }
        let descents = zip(keys, keys.dropFirst()).filter { $1.lexicographicallyPrecedes($0) }.count
        let runs = tuples.reduce(0) { $0 + $1.count } / runBytes + 1
        #expect(descents > 0 && descents <= runs / KeyOrderedTuples.fanIn + 1, "\(descents) descents for \(runs) runs")
    }

    @Test func aTupleBiggerThanARunAndThanTheReadBufferPassesWhole() throws {
        let big = Self.tuple([Array(repeating: UInt8(ascii: "m"), count: 20_000), [1]])
        let small = (0..<200).map { Self.tuple([Array("k\(($0 * 37) % 200 + 1000)".utf8), [2]]) }
        let tuples = Array(small[..<100]) + [big] + Array(small[100...]) + [Self.tuple([Array("a".utf8), nil])]
        let expected = tuples.sorted { Self.field(0, of: $0).lexicographicallyPrecedes(Self.field(0, of: $1)) }
        #expect(Self.split(try Self.reorder([tuples], keyField: 0, runBytes: 1024), fieldCount: 2) == expected)
    }

    @Test func withoutAKeyTheTuplesKeepTheirArrivalOrder() throws {
        let (tuples, _) = Self.textKeyed(700)
        for runBytes in [1024, 1 << 20] {
            #expect(try Self.reorder([tuples], keyField: nil, runBytes: runBytes) == tuples.flatMap { $0 })
        }
    }

    @Test func aRunEndingInsideATupleIsAnErrorNotASilentCut() throws {
        let held = TupleRuns(keyField: 0, runBytes: 1024, directory: NSTemporaryDirectory())
        // A tuple whose field says 5,000 bytes, of which 2,000 are there: written as a run.
        let cut = Self.tuple([Array(repeating: UInt8(ascii: "k"), count: 5_000)]).prefix(2_006)
        try held.append(atMost: cut.count) { at in
            Array(cut).withUnsafeBytes { at.copyMemory(from: $0.baseAddress!, byteCount: cut.count) }
            return cut.count
        }
        #expect(held.runEnds.count == 1)
        var ordered = KeyOrderedTuples(keyField: 0)
        #expect(throws: KeyOrderedTuples.CutTuple.self) { try ordered.send([held]) { _ in } }
    }

    /// The radix sort of a run (64 tuples and more): random 16-byte keys (uuids) with repeats,
    /// shuffled sequential 8-byte integers (most bytes shared, their passes skipped), one key
    /// for all, keys shorter than 8 bytes; each run comes out in key order with equal keys in
    /// arrival order, as a comparison sort by (key, arrival) gives.
    @Test func radixSortedRunsKeepKeyOrderAndArrivalOrderAmongEqualKeys() throws {
        var rng = SplitMix64(seed: 41)
        var uuids: [[UInt8]] = []
        for n in 0..<3_000 {
            let fresh = (0..<2).flatMap { _ in withUnsafeBytes(of: rng.next()) { Array($0) } }
            uuids.append(n % 10 == 9 ? uuids[Int(rng.next() % UInt64(n))] : fresh)
        }
        let sequential = (0..<2_000).map { n -> [UInt8] in withUnsafeBytes(of: UInt64(1_000_000 + n).bigEndian) { Array($0) } }
            .shuffled(using: &rng)
        let same = [[UInt8]](repeating: Array("same-key-for-all".utf8), count: 300)
        let short = (0..<500).map { _ in Array("k\(rng.next() % 50)".utf8) }
        for keys in [uuids, sequential, same, short] {
            let tuples = keys.enumerated().map { n, key in Self.tuple([key, Array("\(n)".utf8)]) }
            let expected = keys.enumerated().sorted { a, b in
                a.element == b.element ? a.offset < b.offset : a.element.lexicographicallyPrecedes(b.element)
            }.map { tuples[$0.offset] }
            // One run in memory, and runs of ~100 tuples on disk merged.
            for runBytes in [1 << 20, 4_096] {
                let sent = Self.split(try Self.reorder([tuples], keyField: 0, runBytes: runBytes), fieldCount: 2)
                if runBytes == 1 << 20 {
                    #expect(sent == expected, "\(keys.count) keys like \(keys[0])")
                } else {
                    #expect(sent.count == tuples.count && Set(sent) == Set(tuples))
                }
            }
        }
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
