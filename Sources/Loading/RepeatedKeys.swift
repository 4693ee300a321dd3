import Ingest

/// The records of a batch whose contract key repeats the key of an earlier record of the batch,
/// found in memory, before any COPY: what `validate` lets through past its per-file memory.
///
/// Two passes over the records, so memory stays small for any file: the first keeps a 32-bit
/// hash of each key (4 bytes a record: 8 MB for 2,000,000); hashes met twice are candidates;
/// the second compares the candidates' keys exactly, so a hash collision never makes a repeat.
/// A key is its binary COPY values (`KeyProbe.appendKey`): equal bytes are the same key for the
/// server, whatever the case of a uuid. Records whose key is not in canonical form (the text
/// path's) are not compared here; the server judges them.
struct RepeatedKeys {
    struct Repeat {
        var file: Int
        /// Its index among the file's records.
        var row: Int
        var line: [UInt8]
        /// The key's text, for the reject's value.
        var key: [String]?
        /// Where the first record with this key is: file, index, source line.
        var firstFile: Int
        var firstRow: Int
        var firstLine: Int?
    }

    /// Per file, ascending by row.
    var byFile: [[Repeat]]
    var count: Int { byFile.reduce(0) { $0 + $1.count } }

    static func find(
        in files: [PendingFile], _ selection: [RowSelection], plan: LoadPlan, progress: inout IsolationProgress
    ) throws -> RepeatedKeys {
        var result = RepeatedKeys(byFile: files.map { _ in [] })
        guard !plan.key.isEmpty else { return result }
        let reader = KeyReader(plan: plan)
        var hashes: [UInt32] = []
        hashes.reserveCapacity(zip(files, selection).reduce(0) { $0 + $1.1.count(of: $1.0.records) })
        for i in files.indices {
            try selection[i].forEachLine(of: files[i]) { _, bytes in
                hashes.append(reader.read(bytes) == nil ? 0 : reader.hash)
                if hashes.count & 0xFFF == 0 { progress.tick() }
            }
        }
        let candidates = repeatedValues(hashes)
        guard !candidates.isEmpty else { return result }
        var firsts: [[UInt8]: (file: Int, row: Int, line: Int?)] = [:]
        var n = 0
        for i in files.indices {
            try selection[i].forEachLine(of: files[i]) { row, bytes in
                defer { n += 1 }
                guard hashes[n] != 0, candidates.contains(hashes[n]), let line = reader.read(bytes) else { return }
                if let first = firsts[reader.bytes] {
                    result.byFile[i].append(
                        Repeat(
                            file: i, row: row, line: Array(bytes), key: KeyProbe.key(of: line, plan: plan), firstFile: first.file,
                            firstRow: first.row, firstLine: first.line))
                } else {
                    firsts[reader.bytes] = (i, row, line.lineNumber)
                }
            }
        }
        return result
    }

    /// The non-zero values met more than once.
    private static func repeatedValues(_ values: [UInt32]) -> Set<UInt32> {
        var sorted = values.filter { $0 != 0 }
        sorted.sort()
        var repeated = Set<UInt32>()
        var k = 1
        while k < sorted.count {
            if sorted[k] == sorted[k - 1] { repeated.insert(sorted[k]) }
            k += 1
        }
        return repeated
    }
}

/// Decodes record lines and writes each one's key as binary COPY values, reusing its buffers.
final class KeyReader {
    let plan: LoadPlan
    private var decoder = LineDecoder()
    private let slots: UnsafeMutableBufferPointer<Int32>
    /// The last key read.
    private(set) var bytes: [UInt8] = []

    init(plan: LoadPlan) {
        self.plan = plan
        slots = .allocate(capacity: max(plan.columnCount, 1))
    }

    deinit { slots.deallocate() }

    /// The record in `raw`, its key in `bytes`; nil when it has no key in canonical form.
    func read(_ raw: UnsafeRawBufferPointer) -> ProtocolLine? {
        bytes.removeAll(keepingCapacity: true)
        guard let line = try? decoder.decode(raw),
            KeyProbe.appendKey(of: line, plan: plan, slots: slots.baseAddress!, into: &bytes)
        else { return nil }
        return line
    }

    /// A 32-bit hash of `bytes`, never 0; seeded per process (Hasher), so crafted keys cannot
    /// aim at one value.
    var hash: UInt32 {
        var hasher = Hasher()
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
        let h = UInt32(truncatingIfNeeded: hasher.finalize())
        return h == 0 ? 1 : h
    }
}
