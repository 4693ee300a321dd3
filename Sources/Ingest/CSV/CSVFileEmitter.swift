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
    /// Header columns the contract does not name: not carried (watch logs them once).
    public var ignoredColumns: [String] = []
    /// True when the file was written to while being read (its size or mtime at the end differ
    /// from the bytes read or from the start): the marker describes a torn read.
    public var changedWhileReading = false
}

/// Turns a CSV file into protocol lines: one record per row with provenance, its cells keyed
/// by the contract's column names, rejects for rows that cannot be read, then the end-of-file
/// marker with the file's identity.
///
/// Shared by `watch` and `validate FILE.csv`, so both read files exactly the same way.
public struct CSVFileEmitter: Sendable {
    public var maxRowBytes: Int
    public let contract: Contract
    /// `,"name":` for each contract column, written before its cell.
    let keyPrefixes: [[UInt8]]

    public init(contract: Contract = .ecommerceEvents, maxRowBytes: Int = 32 << 20) {
        self.maxRowBytes = maxRowBytes
        self.contract = contract
        keyPrefixes = contract.columns.map { column in
            var prefix: [UInt8] = [UInt8(ascii: ",")]
            JSONWriter.appendString(column.name, &prefix)
            prefix.append(UInt8(ascii: ":"))
            return prefix
        }
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
        var ignored: [String] = []

        do {
            guard let header = try reader.nextRow() else {
                // Empty file (or only blank lines): nothing to load, but still a complete file.
                return finish(reader, fd: fd, opened: opened, name: name, seen: seen, rows: 0, records: 0, rejects: 0, problem: nil, output)
            }
            let layout = HeaderLayout(reader: reader, header: header, contract: contract)
            if let problem = layout.fileProblem {
                fileProblem = problem.description
                // The whole file is unusable: one reject explains it, the rest is only hashed.
                rows = 1
                rejects = 1
                reader.withRawRow {
                    LineEncoder.appendRawReject(
                        file: name, line: header.line, raw: UnsafeRawBufferPointer(rebasing: $0.prefix(1024)),
                        reasons: [problem], into: &output.bytes)
                }
                while try reader.nextRow() != nil {}
                return finish(
                    reader, fd: fd, opened: opened, name: name, seen: seen, rows: rows, records: 0, rejects: rejects, problem: fileProblem,
                    output)
            }
            ignored = layout.ignored
            // The rows are written into a local buffer, swapped with the output's at each flush:
            // `&output.bytes` (a class property) per row costs a dynamic exclusivity check,
            // ~290 instructions per row (callgrind).
            var out: [UInt8] = []
            swap(&out, &output.bytes)
            defer { swap(&out, &output.bytes) }
            let template = RecordTemplate(file: name, columns: layout.columns, keyPrefixes: keyPrefixes)
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
                if !reasons.isEmpty {
                    rejects += 1
                    reader.withRawRow {
                        LineEncoder.appendRawReject(file: name, line: row.line, raw: $0, reasons: reasons, into: &out)
                    }
                } else {
                    records += 1
                    reader.withFields { fieldBytes, fieldEnds in
                        LineEncoder.appendRecord(template, line: row.line, fieldBytes: fieldBytes, fieldEnds: fieldEnds, into: &out)
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
        var emitted = finish(
            reader, fd: fd, opened: opened, name: name, seen: seen, rows: rows, records: records, rejects: rejects, problem: fileProblem,
            output)
        emitted.ignoredColumns = ignored
        return emitted
    }

    private func finish(
        _ reader: CSVReader, fd: Int32, opened: FileVersion, name: String, seen: UTCTimestamp?, rows: Int, records: Int,
        rejects: Int, problem: String?, _ output: ByteOutput
    ) -> EmittedFile {
        let fingerprint = FileFingerprint(
            name: name, bytes: reader.byteCount, sha256: reader.sha256Hex(), inode: opened.inode,
            modifiedNanoseconds: opened.modifiedNanoseconds)
        var marker = FileMarker(fingerprint: fingerprint, rows: rows, seen: seen)
        marker.refused = problem
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

/// Where each contract column sits in a file's header.
struct HeaderLayout {
    var columnCount: Int
    /// (contract column, CSV column index), for the columns the header has, in contract order.
    var columns: [(Int, Int)] = []
    /// Header names no contract column reads (not carried).
    var ignored: [String] = []
    /// Why the file is refused as a whole: a header that cannot be read, a column twice, a
    /// contract column missing (or, with `extra_columns: reject`, one the contract lacks).
    var fileProblem: RejectReason?
    /// Every header name, by column, for naming the field of a reader problem.
    var names: [String] = []

    /// The reject reason for a reader problem: `event_type: NUL byte` when column 4 is named.
    func naming(_ problem: CSVProblem) -> RejectReason {
        problem.rejectReason(columnNames: names)
    }

    init(reader: CSVReader, header: CSVRow, contract: Contract) {
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
        var seen: [Int: Int] = [:]
        for index in 0..<header.fieldCount {
            let cell = reader.fieldString(index).trimmingBlanks()
            names.append(contract.column(source: cell).map { contract.columns[$0].name } ?? cell.lowercased())
            guard let column = contract.column(source: cell) else {
                ignored.append(cell)
                continue
            }
            if seen[column] != nil {
                fileProblem = RejectReason(field: contract.columns[column].name, reason: "column appears twice in the header")
                return
            }
            seen[column] = index
        }
        var missing: [String] = []
        for column in contract.columns.indices {
            if let index = seen[column] { columns.append((column, index)) } else { missing.append(contract.columns[column].source) }
        }
        if !missing.isEmpty {
            fileProblem = RejectReason(
                field: missing.count == 1 ? missing[0] : nil,
                reason: "header: \(missing.count == 1 ? "column" : "columns") missing: \(missing.joined(separator: ", "))"
                    + " (the contract \(contract.table) needs \(contract.columns.map(\.source).joined(separator: ", ")))")
        } else if contract.extraColumns == .reject && !ignored.isEmpty {
            fileProblem = RejectReason(
                field: nil,
                reason: "header: \(ignored.count == 1 ? "column" : "columns") not in the contract: \(ignored.joined(separator: ", "))")
        }
    }
}
