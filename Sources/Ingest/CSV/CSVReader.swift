#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One row as the reader found it. Field bytes live in the reader until its next call.
public struct CSVRow: Sendable {
    /// 1-based physical line where the row starts (a quoted newline makes a row span lines).
    public var line: Int
    public var fieldCount: Int
    /// Why the row cannot be trusted (unterminated quote, invalid UTF-8, …); nil when fine.
    public var problem: CSVProblem?
}

/// Why the reader cannot trust a row, and the column concerned as a value (not inside a
/// message), so the emitter names it from the header without parsing text back.
public struct CSVProblem: Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        case unterminatedQuote(openedOnLine: Int)
        case textAfterClosingQuote
        case invalidUTF8
        case nulByte
        case rowTooLong(limitMiB: Int)
    }

    public var kind: Kind
    /// 0-based column, when the problem is in one field.
    public var column: Int?
    /// The offending field's text, when there is one (invalid bytes shown as U+FFFD).
    public var value: String?

    public init(_ kind: Kind, column: Int? = nil, value: String? = nil) {
        self.kind = kind
        self.column = column
        self.value = value
    }

    /// What is wrong, without the column: `NUL byte`.
    public var reason: String {
        switch kind {
        case .unterminatedQuote(let line): "unterminated quoted field (opened on line \(line))"
        case .textAfterClosingQuote: "text after closing quote"
        case .invalidUTF8: "invalid UTF-8"
        case .nulByte: "NUL byte"
        case .rowTooLong(let limit): "row longer than \(limit) MiB"
        }
    }

    /// `field 4: NUL byte` (1-based, as a user counts columns) when no header names it.
    public var description: String {
        column.map { "field \($0 + 1): \(reason)" } ?? reason
    }

    /// The reject reason, naming the column by its header name when it has one.
    public func rejectReason(columnNames names: [String]) -> RejectReason {
        guard let column else { return RejectReason(field: nil, reason: reason, value: value) }
        if column < names.count, !names[column].isEmpty { return RejectReason(field: names[column], reason: reason, value: value) }
        return RejectReason(field: nil, reason: description, value: value)
    }
}

/// A streaming RFC 4180 reader: quoted fields with commas, doubled quotes and newlines, CRLF
/// or LF, a UTF-8 byte order mark, no final newline, blank lines skipped.
///
/// Memory stays flat: one 64 KiB read buffer plus the current row. It also counts and hashes
/// every byte it reads, which gives the file's identity for the end-of-file marker.
public final class CSVReader {
    public let fd: Int32
    /// A row longer than this is rejected, not buffered, so one bad quote cannot eat memory.
    public let maxRowBytes: Int

    private var chunk: UnsafeMutableRawPointer
    private let chunkSize: Int
    private var chunkStart = 0
    private var chunkEnd = 0
    private var eof = false
    /// Bytes of a leading byte order mark skipped so far; -1 once past the start.
    private var bomMatched = 0
    private static let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]

    /// Unescaped field bytes of the current row, back to back; `fieldEnds[i]` ends field i.
    public private(set) var fieldBytes: [UInt8] = []
    public private(set) var fieldEnds: [Int] = []
    /// The current row's bytes exactly as in the file (without its line terminator).
    public private(set) var rawRow: [UInt8] = []

    private var physicalLine = 1
    private var hasher = SHA256Hasher()
    public private(set) var byteCount: Int64 = 0

    public init(fd: Int32, chunkSize: Int = 1 << 16, maxRowBytes: Int = 32 << 20) {
        self.fd = fd
        self.chunkSize = chunkSize
        self.maxRowBytes = maxRowBytes
        self.chunk = UnsafeMutableRawPointer.allocate(byteCount: chunkSize, alignment: 16)
        fieldBytes.reserveCapacity(1024)
        fieldEnds.reserveCapacity(16)
        rawRow.reserveCapacity(1024)
    }

    deinit { chunk.deallocate() }

    /// Field `i` of the current row.
    public func withField<R>(_ i: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let start = i == 0 ? 0 : fieldEnds[i - 1]
        return try fieldBytes.withUnsafeBytes { all in
            try body(UnsafeRawBufferPointer(rebasing: all[start..<fieldEnds[i]]))
        }
    }

    /// The current row's field bytes and where each field ends, in one access.
    @inline(__always)
    func withFields<R>(_ body: (UnsafeRawBufferPointer, UnsafeBufferPointer<Int>) throws -> R) rethrows -> R {
        try fieldBytes.withUnsafeBytes { bytes in try fieldEnds.withUnsafeBufferPointer { try body(bytes, $0) } }
    }

    public func fieldString(_ i: Int) -> String {
        withField(i) { String(decoding: $0, as: UTF8.self) }
    }

    /// Lowercase hex SHA-256 of all bytes read so far (the whole file once `nextRow` returned nil).
    public func sha256Hex() -> String {
        hasher.finalizeHex()
    }

    private enum State { case fieldStart, unquoted, quoted, quoteSeen }

    /// The next non-blank row, or nil at end of file.
    public func nextRow() throws -> CSVRow? {
        while true {
            guard let row = try readRow() else { return nil }
            // A blank line: one empty unquoted field with no raw text (or only a stray CR).
            if row.fieldCount == 1 && row.problem == nil && fieldEnds[0] == 0
                && (rawRow.isEmpty || rawRow == [0x0D])
            {
                continue
            }
            return row
        }
    }

    // The per-byte loop works on local copies of the row's buffers, moved out of the class and
    // back once per row: a class property touched per byte costs a dynamic exclusivity check
    // per access, which was ~38% of watch's instructions (callgrind, release build) before the
    // global `-enforce-exclusivity=unchecked` flag went. Locals need no check, in safe code.
    private func readRow() throws -> CSVRow? {
        var fieldBytes: [UInt8] = []
        var fieldEnds: [Int] = []
        var rawRow: [UInt8] = []
        swap(&fieldBytes, &self.fieldBytes)
        swap(&fieldEnds, &self.fieldEnds)
        swap(&rawRow, &self.rawRow)
        var physicalLine = self.physicalLine
        defer {
            swap(&fieldBytes, &self.fieldBytes)
            swap(&fieldEnds, &self.fieldEnds)
            swap(&rawRow, &self.rawRow)
            self.physicalLine = physicalLine
        }
        fieldBytes.removeAll(keepingCapacity: fieldBytes.capacity <= 1 << 20)
        fieldEnds.removeAll(keepingCapacity: true)
        rawRow.removeAll(keepingCapacity: rawRow.capacity <= 1 << 20)
        var state = State.fieldStart
        var fieldWasQuoted = false
        var problem: CSVProblem?
        let rowLine = physicalLine
        var quoteOpenedLine = physicalLine
        var tooLong = false
        var sawAnything = false

        func finishField(quoted: Bool) {
            // An unquoted field ending in CR is the CR of a CRLF line ending.
            if !quoted, fieldBytes.count > (fieldEnds.last ?? 0), fieldBytes.last == 0x0D {
                fieldBytes.removeLast()
            }
            fieldEnds.append(fieldBytes.count)
        }

        while true {
            if chunkStart == chunkEnd {
                let more = eof ? false : try fill()
                if !more {
                    // End of file.
                    guard sawAnything else { return nil }
                    if state == .quoted {
                        problem = problem ?? CSVProblem(.unterminatedQuote(openedOnLine: quoteOpenedLine))
                    }
                    finishField(quoted: fieldWasQuoted)
                    return finishRow(line: rowLine, problem: problem, tooLong: tooLong, fieldBytes, fieldEnds, &rawRow)
                }
            }
            let p = chunk.assumingMemoryBound(to: UInt8.self)
            var i = chunkStart
            let end = chunkEnd
            sawAnything = true
            var rowEnded = false
            while i < end {
                let b = p[i]
                switch state {
                case .fieldStart, .unquoted:
                    if b == UInt8(ascii: "\"") && state == .fieldStart {
                        state = .quoted
                        fieldWasQuoted = true
                        quoteOpenedLine = physicalLine
                        break
                    }
                    // Text up to the next comma or newline, copied as one run (a quote inside
                    // an unquoted field is text): per-byte appends were ~1/4 of readRow's
                    // instructions (callgrind).
                    var j = i
                    while j < end {
                        let c = p[j]
                        if c == UInt8(ascii: ",") || c == 0x0A { break }
                        j += 1
                    }
                    if j > i {
                        state = .unquoted
                        if !tooLong { fieldBytes.append(contentsOf: UnsafeRawBufferPointer(start: p + i, count: j - i)) }
                        i = j
                        if j == end { continue }
                    }
                    if p[i] == UInt8(ascii: ",") {
                        finishField(quoted: fieldWasQuoted)
                        fieldWasQuoted = false
                        state = .fieldStart
                    } else {
                        physicalLine += 1
                        rowEnded = true
                    }
                case .quoted:
                    // Text up to the closing (or doubled) quote, as one run.
                    var j = i
                    while j < end {
                        let c = p[j]
                        if c == UInt8(ascii: "\"") { break }
                        if c == 0x0A { physicalLine += 1 }
                        j += 1
                    }
                    if j > i {
                        if !tooLong { fieldBytes.append(contentsOf: UnsafeRawBufferPointer(start: p + i, count: j - i)) }
                        i = j
                        if j == end { continue }
                    }
                    state = .quoteSeen
                case .quoteSeen:
                    if b == UInt8(ascii: "\"") {
                        if !tooLong { fieldBytes.append(b) }
                        state = .quoted
                    } else if b == UInt8(ascii: ",") {
                        finishField(quoted: true)
                        fieldWasQuoted = false
                        state = .fieldStart
                    } else if b == 0x0A {
                        physicalLine += 1
                        rowEnded = true
                    } else if b == 0x0D {
                        // CR of a CRLF after a closing quote; a CR elsewhere is text.
                        if i + 1 < end, p[i + 1] != 0x0A {
                            problem = problem ?? CSVProblem(.textAfterClosingQuote, column: fieldEnds.count)
                        }
                    } else {
                        problem = problem ?? CSVProblem(.textAfterClosingQuote, column: fieldEnds.count)
                        state = .unquoted
                        if !tooLong { fieldBytes.append(b) }
                    }
                }
                if rowEnded { break }
                i += 1
            }
            // Keep the row's raw bytes (up to the newline) for rejects.
            let consumedEnd = rowEnded ? i : end
            if !tooLong {
                rawRow.append(contentsOf: UnsafeRawBufferPointer(start: chunk + chunkStart, count: consumedEnd - chunkStart))
                if rawRow.count > maxRowBytes {
                    tooLong = true
                    fieldBytes.removeAll()
                    rawRow.removeAll()
                }
            }
            chunkStart = rowEnded ? i + 1 : end
            if rowEnded {
                finishField(quoted: fieldWasQuoted)
                return finishRow(line: rowLine, problem: problem, tooLong: tooLong, fieldBytes, fieldEnds, &rawRow)
            }
        }
    }

    private func finishRow(
        line: Int, problem: CSVProblem?, tooLong: Bool, _ fieldBytes: [UInt8], _ fieldEnds: [Int], _ rawRow: inout [UInt8]
    ) -> CSVRow {
        if rawRow.last == 0x0D { rawRow.removeLast() }
        if tooLong {
            return CSVRow(line: line, fieldCount: fieldEnds.count, problem: CSVProblem(.rowTooLong(limitMiB: maxRowBytes >> 20)))
        }
        var problem = problem
        if problem == nil {
            problem = fieldBytes.withUnsafeBytes { all -> CSVProblem? in
                guard firstInvalidUTF8(all) != nil else { return nil }
                var start = 0
                for (index, end) in fieldEnds.enumerated() {
                    let field = UnsafeRawBufferPointer(rebasing: all[start..<end])
                    if firstInvalidUTF8(field) != nil {
                        // The value as text (U+FFFD for the bad bytes); the exact bytes are in raw_base64.
                        let value = repairedUTF8(field).map { String(decoding: $0, as: UTF8.self) }
                        return CSVProblem(.invalidUTF8, column: index, value: value)
                    }
                    start = end
                }
                return CSVProblem(.invalidUTF8)
            }
        }
        if problem == nil {
            // NUL cannot be stored in PostgreSQL text; say so here, with the field.
            problem = fieldBytes.withUnsafeBytes { all -> CSVProblem? in
                guard all.count > 0, memchr(all.baseAddress!, 0, all.count) != nil else { return nil }
                var start = 0
                for (index, end) in fieldEnds.enumerated() {
                    if memchr(all.baseAddress! + start, 0, end - start) != nil {
                        let value = String(decoding: UnsafeRawBufferPointer(rebasing: all[start..<end]), as: UTF8.self)
                        return CSVProblem(.nulByte, column: index, value: value)
                    }
                    start = end
                }
                return nil
            }
        }
        return CSVRow(line: line, fieldCount: fieldEnds.count, problem: problem)
    }

    /// Reads the next chunk; false at end of file.
    private func fill() throws -> Bool {
        let n = try readRetrying(fd, chunk, chunkSize)
        if n == 0 {
            eof = true
            return false
        }
        hasher.update(UnsafeRawBufferPointer(start: chunk, count: n))
        byteCount += Int64(n)
        chunkStart = 0
        chunkEnd = n
        // A UTF-8 byte order mark may arrive split across reads.
        let p = chunk.assumingMemoryBound(to: UInt8.self)
        while bomMatched >= 0 && bomMatched < 3 && chunkStart < chunkEnd {
            if p[chunkStart] == CSVReader.byteOrderMark[bomMatched] {
                chunkStart += 1
                bomMatched += 1
            } else {
                bomMatched = -1
            }
        }
        return true
    }
}
