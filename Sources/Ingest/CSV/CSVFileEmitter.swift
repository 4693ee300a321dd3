#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What reading one CSV file produced.
public struct EmittedFile: Sendable {
    public var marker: FileMarker
    public var records: Int
    public var rejects: Int
    /// A problem with the file as a whole (not UTF-8, unusable header), worth a stderr line.
    public var fileProblem: String?
    /// The file's version when it was opened (its inode and mtime are in the marker).
    public var version: FileVersion?
    /// True when the file was written to while being read (its size or mtime at the end differ
    /// from the bytes read or from the start): the marker describes a torn read.
    public var changedWhileReading = false
}

/// Turns a CSV file of events into protocol lines: one record per row with provenance,
/// rejects for rows that cannot be read, then the end-of-file marker with the file's identity.
///
/// Shared by `watch` and `validate FILE.csv`, so both read files exactly the same way.
public struct CSVFileEmitter: Sendable {
    public var maxRowBytes: Int

    public init(maxRowBytes: Int = 32 << 20) {
        self.maxRowBytes = maxRowBytes
    }

    /// Streams `path` into `output`; `name` is the provenance (the file's name in its folder).
    ///
    /// Throws `SystemError` when the file cannot be opened or read. Lines already written for
    /// a file that fails mid-way have no marker, so `load` never commits them.
    public func emit(path: String, name: String, seen: UTCTimestamp?, into output: ByteOutput) throws -> EmittedFile {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", errno: errno, path: path) }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
            throw SystemError("read", errno: EISDIR, path: path)
        }
        let opened = try FileVersion.of(fd: fd, path: path)
        let reader = CSVReader(fd: fd, maxRowBytes: maxRowBytes)
        var rows = 0
        var records = 0
        var rejects = 0
        var fileProblem: String?

        do {
            guard let header = try reader.nextRow() else {
                // Empty file (or only blank lines): nothing to load, but still a complete file.
                return finish(reader, fd: fd, opened: opened, name: name, seen: seen, rows: 0, records: 0, rejects: 0, problem: nil, output)
            }
            let layout = HeaderLayout(reader: reader, header: header)
            if let problem = layout.fileProblem {
                fileProblem = problem.reason
                // The whole file is unusable: one reject explains it, the rest is only hashed.
                rows = 1
                rejects = 1
                reader.rawRow.withUnsafeBytes {
                    LineEncoder.appendRawReject(
                        file: name, line: header.line, raw: UnsafeRawBufferPointer(rebasing: $0.prefix(1024)),
                        reasons: [problem], into: &output.bytes)
                }
                while try reader.nextRow() != nil {}
                return finish(
                    reader, fd: fd, opened: opened, name: name, seen: seen, rows: rows, records: 0, rejects: rejects, problem: fileProblem,
                    output)
            }
            // The rows are written into a local buffer, swapped with the output's at each flush:
            // `&output.bytes` (a class property) per row costs a dynamic exclusivity check,
            // ~290 instructions per row (callgrind).
            var out: [UInt8] = []
            swap(&out, &output.bytes)
            defer { swap(&out, &output.bytes) }
            let fileName = Array(name.utf8)
            while let row = try reader.nextRow() {
                rows += 1
                var reasons: [RejectReason] = []
                if let problem = row.problem {
                    reasons.append(layout.naming(problem))
                } else if row.fieldCount != layout.columnCount {
                    reasons.append(
                        RejectReason(
                            field: nil, reason: "expected \(layout.columnCount) fields, found \(row.fieldCount)"))
                }
                reasons.append(contentsOf: layout.missing)
                if !reasons.isEmpty {
                    rejects += 1
                    reader.rawRow.withUnsafeBytes {
                        LineEncoder.appendRawReject(file: name, line: row.line, raw: $0, reasons: reasons, into: &out)
                    }
                } else {
                    records += 1
                    reader.withFields { fieldBytes, fieldEnds in
                        fileName.withUnsafeBytes { file in
                            layout.columns.withUnsafeBufferPointer { columns in
                                LineEncoder.appendRecord(
                                    file: file, line: row.line, columns: columns, fieldBytes: fieldBytes, fieldEnds: fieldEnds, into: &out)
                            }
                        }
                    }
                }
                if out.count >= output.flushThreshold {
                    swap(&out, &output.bytes)
                    try output.flush()
                    swap(&out, &output.bytes)
                }
            }
        } catch let error as SystemError {
            throw SystemError(error.call, errno: error.errno, path: path)
        }
        return finish(
            reader, fd: fd, opened: opened, name: name, seen: seen, rows: rows, records: records, rejects: rejects, problem: fileProblem,
            output)
    }

    private func finish(
        _ reader: CSVReader, fd: Int32, opened: FileVersion, name: String, seen: UTCTimestamp?, rows: Int, records: Int,
        rejects: Int, problem: String?, _ output: ByteOutput
    ) -> EmittedFile {
        let fingerprint = FileFingerprint(
            name: name, bytes: reader.byteCount, sha256: reader.sha256Hex(), inode: opened.inode,
            modifiedNanoseconds: opened.modifiedNanoseconds)
        let marker = FileMarker(fingerprint: fingerprint, rows: rows, seen: seen)
        var emitted = EmittedFile(marker: marker, records: records, rejects: rejects, fileProblem: problem, version: opened)
        if let closing = try? FileVersion.of(fd: fd, path: name) {
            emitted.changedWhileReading =
                closing.size != reader.byteCount || closing.modifiedNanoseconds != opened.modifiedNanoseconds
        }
        if emitted.changedWhileReading {
            // A torn read: its rows must not be committed. `abandon` tells load to drop them.
            LineEncoder.appendAbandon(file: name, reason: "changed while being read", into: &output.bytes)
        } else {
            LineEncoder.appendMarker(marker, into: &output.bytes)
        }
        return emitted
    }
}

/// Where each event field sits in a file's header.
struct HeaderLayout {
    var columnCount: Int
    /// (field, column index), for the fields the header has.
    var columns: [(EventField, Int)] = []
    /// One reason per required column the header lacks: every row of the file gets them.
    var missing: [RejectReason] = []
    var fileProblem: RejectReason?
    /// Every header name, by column, for naming the field of a reader problem.
    var names: [String] = []

    /// The reject reason for a reader problem: `event_type: NUL byte` when column 4 is named.
    func naming(_ problem: CSVProblem) -> RejectReason {
        problem.rejectReason(columnNames: names)
    }

    init(reader: CSVReader, header: CSVRow) {
        columnCount = header.fieldCount
        if let problem = header.problem {
            let raw = reader.rawRow
            if raw.count >= 2 && ((raw[0] == 0xFF && raw[1] == 0xFE) || (raw[0] == 0xFE && raw[1] == 0xFF)) {
                fileProblem = RejectReason(field: nil, reason: "file is UTF-16, not UTF-8")
            } else {
                fileProblem = RejectReason(field: nil, reason: "header: \(problem.description)")
            }
            return
        }
        var seen: [EventField: Int] = [:]
        for index in 0..<header.fieldCount {
            let name = reader.fieldString(index).trimmingSpaces().lowercased()
            names.append(name)
            guard let field = EventField(name: name) else { continue }  // extra columns are ignored
            if seen[field] != nil {
                fileProblem = RejectReason(field: field.name, reason: "column appears twice in the header")
                return
            }
            seen[field] = index
        }
        for field in EventField.allCases {
            if let index = seen[field] {
                columns.append((field, index))
            } else {
                missing.append(RejectReason(field: field.name, reason: "column missing from the header"))
            }
        }
    }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return String(s)
    }
}
