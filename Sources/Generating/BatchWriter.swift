import Ingest

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes batch files into a folder so no reader ever sees a partial one, and none is overwritten.
///
/// Each file is written and fsynced under a hidden temporary name in the same folder
/// (`.batch_….csv.tmp`, which `watch` ignores), then given its name with `link(2)`, which fails
/// rather than replace an existing file, and the temporary name is removed.
public struct BatchWriter {
    public let folder: String
    /// Per-run sequence, the last part of the name: unique and sorting in creation order
    /// even at thousands of files per second.
    public private(set) var sequence = 0

    /// Creates `folder` (and its parents) if needed and checks it can be written.
    public init(folder: String) throws {
        self.folder = folder
        try makeDirectories(folder)
        guard access(folder, W_OK | X_OK) == 0 else { throw SystemError("access", errno: errno, path: folder) }
    }

    /// `batch_20240130_101523_000042.csv` for `time` and `sequence`.
    public static func fileName(time: UTCTimestamp, sequence: Int) -> String {
        var stamp: [UInt8] = []
        time.appendRFC3339(to: &stamp)
        // YYYY-MM-DDTHH:MM:SS → YYYYMMDD_HHMMSS
        let digits = stamp.prefix(19).filter { $0 >= 0x30 && $0 <= 0x39 }
        let date = String(decoding: digits.prefix(8), as: UTF8.self)
        let clock = String(decoding: digits.dropFirst(8).prefix(6), as: UTF8.self)
        let number = String(sequence)
        return "batch_\(date)_\(clock)_\(String(repeating: "0", count: max(0, 6 - number.count)))\(number).csv"
    }

    /// Writes `contents` as a new batch file; returns its name (within the folder).
    public mutating func write(_ contents: [UInt8], time: UTCTimestamp) throws -> String {
        let name = BatchWriter.fileName(time: time, sequence: sequence)
        let temporary = "\(folder)/.\(name).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("open", errno: errno, path: temporary) }
        do {
            defer { close(fd) }
            try contents.withUnsafeBytes { try writeAll(fd, $0) }
            guard fsync(fd) == 0 else { throw SystemError("fsync", errno: errno, path: temporary) }
        } catch {
            unlink(temporary)
            throw error
        }
        defer { unlink(temporary) }
        var candidate = name
        while true {
            sequence += 1
            if link(temporary, "\(folder)/\(candidate)") == 0 { return candidate }
            let error = errno
            guard error == EEXIST else { throw SystemError("link", errno: error, path: "\(folder)/\(candidate)") }
            // Another run wrote this name in the same second: take the next number.
            candidate = BatchWriter.fileName(time: time, sequence: sequence)
        }
    }

    /// Removes temporary files a killed run left behind (only ours: `.batch_*.csv.tmp`).
    public func removeLeftovers() {
        guard let dir = opendir(folder) else { return }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasPrefix(".batch_") && name.hasSuffix(".csv.tmp") { unlink("\(folder)/\(name)") }
        }
    }
}

/// A generated batch as file contents and as protocol lines.
public enum BatchEncoding {
    /// The CSV file: header, then one row per line, `\n` terminated.
    public static func csv(_ rows: [GeneratedRow]) -> [UInt8] {
        var text = EventField.csvHeader + "\n"
        for row in rows { text += row.csvLine + "\n" }
        return Array(text.utf8)
    }

    /// Records without file provenance (for `gen --stdout | validate`). A row with the wrong
    /// field count becomes the reject `watch` would make of it.
    public static func appendRecords(_ rows: [GeneratedRow], into out: inout [UInt8]) {
        var fields: [(EventField, UnsafeRawBufferPointer)] = []
        for row in rows {
            let line = row.csvLine
            guard row.cells.count == EventField.allCases.count else {
                var copy = line
                copy.withUTF8 {
                    LineEncoder.appendRawReject(
                        file: nil, line: nil, raw: UnsafeRawBufferPointer($0),
                        reasons: [RejectReason(field: nil, reason: "expected 6 fields, found \(row.cells.count)")], into: &out)
                }
                continue
            }
            let bytes = Array(line.utf8)
            bytes.withUnsafeBytes { all in
                fields.removeAll(keepingCapacity: true)
                var start = 0
                for (index, cell) in row.cells.enumerated() {
                    let end = start + cell.utf8.count
                    fields.append((EventField(rawValue: index)!, UnsafeRawBufferPointer(rebasing: all[start..<end])))
                    start = end + 1
                }
                LineEncoder.appendRecord(file: nil, line: nil, fields: fields, into: &out)
            }
        }
    }

    /// One manifest line: what a batch holds, the ground truth for end-to-end tests.
    /// `{"file":…,"rows":50,"valid":48,"invalid":2,"valid_event_ids":[…],"invalid_lines":[{"line":7,"rule":"price"}]}`
    /// `line` is the row's line in the CSV file (the header is line 1).
    public static func appendManifestLine(file: String?, rows: [GeneratedRow], into out: inout [UInt8]) {
        var w = JSONWriter()
        w.beginObject(&out)
        w.key("file", &out)
        if let file { w.string(file, &out) } else { w.null(&out) }
        w.key("rows", &out)
        w.int(rows.count, &out)
        let invalid = rows.filter { $0.brokenRule != nil }.count
        w.key("valid", &out)
        w.int(rows.count - invalid, &out)
        w.key("invalid", &out)
        w.int(invalid, &out)
        w.key("valid_event_ids", &out)
        w.beginArray(&out)
        for row in rows {
            if let id = row.eventID, row.brokenRule == nil {
                w.element(&out)
                w.string(id, &out)
            }
        }
        w.endArray(&out)
        w.key("invalid_lines", &out)
        w.beginArray(&out)
        for (index, row) in rows.enumerated() {
            guard let rule = row.brokenRule else { continue }
            w.element(&out)
            w.beginObject(&out)
            w.key("line", &out)
            w.int(index + 2, &out)
            w.key("rule", &out)
            w.string(rule.rawValue, &out)
            w.endObject(&out)
        }
        w.endArray(&out)
        w.endLine(&out)
    }
}
