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

    private let chunk: UnsafeMutableRawPointer
    private let chunkSize: Int
    /// Bytes of a leading byte order mark skipped so far; -1 once past the start.
    private var bomMatched = 0
    private static let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]

    /// What changes row by row, behind a pointer the reader owns: a `var` of a class costs a
    /// dynamic exclusivity check per access (~100 instructions with its thread-local lookup),
    /// a `let` pointer's memory none.
    private let state: UnsafeMutablePointer<RowState>
    private var hasher = SHA256Hasher()
    public private(set) var byteCount: Int64 = 0

    public init(fd: Int32, chunkSize: Int = 1 << 16, maxRowBytes: Int = 32 << 20) {
        self.fd = fd
        self.chunkSize = chunkSize
        self.maxRowBytes = maxRowBytes
        self.chunk = UnsafeMutableRawPointer.allocate(byteCount: chunkSize, alignment: 16)
        state = UnsafeMutablePointer<RowState>.allocate(capacity: 1)
        state.initialize(to: RowState())
    }

    deinit {
        chunk.deallocate()
        state.pointee.fields.deallocate()
        state.pointee.ends.deallocate()
        state.pointee.carried.deallocate()
        state.deinitialize(count: 1)
        state.deallocate()
    }

    private var fields: GrowableBuffer<UInt8> { state.pointee.fields }
    private var ends: GrowableBuffer<Int> { state.pointee.ends }
    private var raw: UnsafeRawBufferPointer { state.pointee.raw }

    /// Unescaped field bytes of the current row, back to back; `fieldEnds[i]` ends field i
    /// (copies: the per-row path uses `withFields`).
    public var fieldBytes: [UInt8] { Array(UnsafeBufferPointer(start: fields.base, count: fields.count)) }
    public var fieldEnds: [Int] { Array(UnsafeBufferPointer(start: ends.base, count: ends.count)) }
    /// The current row's bytes exactly as in the file, without its line terminator (a copy:
    /// `withRawRow` lends them).
    public var rawRow: [UInt8] { Array(raw) }

    /// Lends the current row's raw bytes (valid until the next row is read).
    public func withRawRow<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(raw)
    }

    /// Field `i` of the current row.
    public func withField<R>(_ i: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        precondition(i >= 0 && i < ends.count, "field index out of range")
        let start = i == 0 ? 0 : ends.base[i - 1]
        return try body(UnsafeRawBufferPointer(start: fields.base + start, count: ends.base[i] - start))
    }

    /// The current row's field bytes and where each field ends, in one access.
    @inline(__always)
    func withFields<R>(_ body: (UnsafeRawBufferPointer, UnsafeBufferPointer<Int>) throws -> R) rethrows -> R {
        try body(
            UnsafeRawBufferPointer(start: fields.base, count: fields.count), UnsafeBufferPointer(start: ends.base, count: ends.count))
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
            if row.fieldCount == 1 && row.problem == nil && ends.base[0] == 0 && (raw.count == 0 || (raw.count == 1 && raw[0] == 0x0D)) {
                continue
            }
            return row
        }
    }

    // Kept whole on purpose (the one function over 100 lines): it is watch's per-byte state
    // machine, and a helper that took or captured the row's buffers cost a dynamic exclusivity
    // check per call, ~1,250 instructions a row (callgrind, release build, 3 Dec 2026).
    // The per-byte loop works on local copies of the row's buffers, stored back once per row:
    // a class property touched per byte costs a dynamic exclusivity check per access, which
    // was ~38% of watch's instructions (callgrind, release build) before the global
    // `-enforce-exclusivity=unchecked` flag went. Locals need no check, in safe code.
    private func readRow() throws -> CSVRow? {
        let shared = self.state
        var fields = shared.pointee.fields
        var ends = shared.pointee.ends
        var carried = shared.pointee.carried
        var physicalLine = shared.pointee.physicalLine
        var raw = UnsafeRawBufferPointer(start: nil, count: 0)
        defer {
            shared.pointee.fields = fields
            shared.pointee.ends = ends
            shared.pointee.carried = carried
            shared.pointee.physicalLine = physicalLine
            shared.pointee.raw = raw
        }
        fields.count = 0
        ends.count = 0
        carried.count = 0
        // Buffers grown by one huge row are given back, so memory stays flat.
        if fields.capacity > 1 << 20 { fields.shrink(to: 1024) }
        if carried.capacity > 1 << 20 { carried.shrink(to: 1024) }
        var state = State.fieldStart
        var fieldWasQuoted = false
        var problem: CSVProblem?
        let rowLine = physicalLine
        var quoteOpenedLine = physicalLine
        var tooLong = false
        var sawAnything = false
        var carriedAny = false

        while true {
            if shared.pointee.chunkStart == shared.pointee.chunkEnd {
                let more = shared.pointee.eof ? false : try fill()
                if !more {
                    // End of file.
                    guard sawAnything else { return nil }
                    if state == .quoted {
                        problem = problem ?? CSVProblem(.unterminatedQuote(openedOnLine: quoteOpenedLine))
                    }
                    CSVReader.finishField(&fields, &ends, quoted: fieldWasQuoted)
                    if !tooLong { raw = UnsafeRawBufferPointer(start: carried.base, count: carried.count) }
                    return finishRow(line: rowLine, problem: problem, tooLong: tooLong, fields, ends, &raw)
                }
            }
            let p = chunk.assumingMemoryBound(to: UInt8.self)
            let chunkStart = shared.pointee.chunkStart
            var i = chunkStart
            let end = shared.pointee.chunkEnd
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
                    // an unquoted field is text); found 8 bytes at a time.
                    var j = i
                    while j + 8 <= end {
                        let mask = commaOrNewlineMask(UnsafeRawPointer(p + j).loadUnaligned(as: UInt64.self))
                        if mask != 0 {
                            j += mask.trailingZeroBitCount >> 3
                            break
                        }
                        j += 8
                    }
                    if j + 8 > end {
                        while j < end {
                            let c = p[j]
                            if c == UInt8(ascii: ",") || c == 0x0A { break }
                            j += 1
                        }
                    }
                    if j > i {
                        state = .unquoted
                        if !tooLong { fields.append(p + i, j - i) }
                        i = j
                        if j == end { continue }
                    }
                    if p[i] == UInt8(ascii: ",") {
                        CSVReader.finishField(&fields, &ends, quoted: fieldWasQuoted)
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
                        if !tooLong { fields.append(p + i, j - i) }
                        i = j
                        if j == end { continue }
                    }
                    state = .quoteSeen
                case .quoteSeen:
                    if b == UInt8(ascii: "\"") {
                        if !tooLong { fields.append(b) }
                        state = .quoted
                    } else if b == UInt8(ascii: ",") {
                        CSVReader.finishField(&fields, &ends, quoted: true)
                        fieldWasQuoted = false
                        state = .fieldStart
                    } else if b == 0x0A {
                        physicalLine += 1
                        rowEnded = true
                    } else if b == 0x0D {
                        // CR of a CRLF after a closing quote; a CR elsewhere is text.
                        if i + 1 < end, p[i + 1] != 0x0A {
                            problem = problem ?? CSVProblem(.textAfterClosingQuote, column: ends.count)
                        }
                    } else {
                        problem = problem ?? CSVProblem(.textAfterClosingQuote, column: ends.count)
                        state = .unquoted
                        if !tooLong { fields.append(b) }
                    }
                }
                if rowEnded { break }
                i += 1
            }
            // The row's raw bytes (up to the newline), for rejects: lent from the chunk when the
            // whole row is in it, carried over otherwise.
            let consumedEnd = rowEnded ? i : end
            let consumed = consumedEnd - chunkStart
            if !tooLong {
                if rowEnded && !carriedAny && consumed <= maxRowBytes {
                    raw = UnsafeRawBufferPointer(start: chunk + chunkStart, count: consumed)
                } else {
                    carried.append(chunk.assumingMemoryBound(to: UInt8.self) + chunkStart, consumed)
                    carriedAny = true
                    if carried.count > maxRowBytes {
                        tooLong = true
                        fields.count = 0
                        carried.count = 0
                    } else if rowEnded {
                        raw = UnsafeRawBufferPointer(start: carried.base, count: carried.count)
                    }
                }
            }
            shared.pointee.chunkStart = rowEnded ? i + 1 : end
            if rowEnded {
                CSVReader.finishField(&fields, &ends, quoted: fieldWasQuoted)
                return finishRow(line: rowLine, problem: problem, tooLong: tooLong, fields, ends, &raw)
            }
        }
    }

    // A static function on inout buffers, not a nested one capturing them: a captured `var`
    // got a dynamic exclusivity check per access (13 per row, ~1,250 instructions; callgrind).
    @inline(__always)
    private static func finishField(_ fields: inout GrowableBuffer<UInt8>, _ ends: inout GrowableBuffer<Int>, quoted: Bool) {
        // An unquoted field ending in CR is the CR of a CRLF line ending.
        if !quoted, fields.count > (ends.count == 0 ? 0 : ends.base[ends.count - 1]), fields.base[fields.count - 1] == 0x0D {
            fields.count -= 1
        }
        ends.append(fields.count)
    }

    private func finishRow(
        line: Int, problem: CSVProblem?, tooLong: Bool, _ fields: GrowableBuffer<UInt8>, _ ends: GrowableBuffer<Int>,
        _ raw: inout UnsafeRawBufferPointer
    ) -> CSVRow {
        if raw.count > 0 && raw[raw.count - 1] == 0x0D { raw = UnsafeRawBufferPointer(rebasing: raw.dropLast()) }
        if tooLong {
            raw = UnsafeRawBufferPointer(start: nil, count: 0)
            return CSVRow(line: line, fieldCount: ends.count, problem: CSVProblem(.rowTooLong(limitMiB: maxRowBytes >> 20)))
        }
        let all = UnsafeRawBufferPointer(start: fields.base, count: fields.count)
        let fieldEnds = UnsafeBufferPointer(start: ends.base, count: ends.count)
        var problem = problem
        if problem == nil, firstInvalidUTF8(all) != nil {
            problem = CSVProblem(.invalidUTF8)
            var start = 0
            for (index, end) in fieldEnds.enumerated() {
                let field = UnsafeRawBufferPointer(rebasing: all[start..<end])
                if firstInvalidUTF8(field) != nil {
                    // The value as text (U+FFFD for the bad bytes); the exact bytes are in raw_base64.
                    let value = repairedUTF8(field).map { String(decoding: $0, as: UTF8.self) }
                    problem = CSVProblem(.invalidUTF8, column: index, value: value)
                    break
                }
                start = end
            }
        }
        if problem == nil, all.count > 0, memchr(all.baseAddress!, 0, all.count) != nil {
            // NUL cannot be stored in PostgreSQL text; say so here, with the field.
            var start = 0
            for (index, end) in fieldEnds.enumerated() {
                if memchr(all.baseAddress! + start, 0, end - start) != nil {
                    let value = String(decoding: UnsafeRawBufferPointer(rebasing: all[start..<end]), as: UTF8.self)
                    problem = CSVProblem(.nulByte, column: index, value: value)
                    break
                }
                start = end
            }
        }
        return CSVRow(line: line, fieldCount: ends.count, problem: problem)
    }

    /// Reads the next chunk; false at end of file.
    private func fill() throws -> Bool {
        let n = try readRetrying(fd, chunk, chunkSize)
        if n == 0 {
            state.pointee.eof = true
            return false
        }
        hasher.update(UnsafeRawBufferPointer(start: chunk, count: n))
        byteCount += Int64(n)
        var chunkStart = 0
        let chunkEnd = n
        defer {
            state.pointee.chunkStart = chunkStart
            state.pointee.chunkEnd = chunkEnd
        }
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

/// Non-zero when any byte of `w` is `,` or a newline; the lowest flagged byte is the first
/// such byte (the has-zero-byte test is exact up to the first match).
@inline(__always) private func commaOrNewlineMask(_ w: UInt64) -> UInt64 {
    let ones: UInt64 = 0x0101_0101_0101_0101
    let comma = UInt64(littleEndian: w) ^ 0x2C2C_2C2C_2C2C_2C2C
    let newline = UInt64(littleEndian: w) ^ 0x0A0A_0A0A_0A0A_0A0A
    return ((comma &- ones) & ~comma | (newline &- ones) & ~newline) & 0x8080_8080_8080_8080
}

/// A reader's row-by-row state (see `CSVReader.state`).
private struct RowState {
    /// The current row's unescaped field bytes, back to back, and where each field ends; the
    /// row's raw bytes carried over from earlier chunks. Flat buffers reused row after row:
    /// `Array.append` per field and per row (uniqueness and capacity checks, a generic copy)
    /// was most of `readRow`'s ~2,200 instructions a row (callgrind).
    var fields = GrowableBuffer<UInt8>(capacity: 1024)
    var ends = GrowableBuffer<Int>(capacity: 16)
    var carried = GrowableBuffer<UInt8>(capacity: 1024)
    /// The current row's raw text: in the chunk when it did not cross a read (the common case,
    /// no copy), else in `carried`.
    var raw = UnsafeRawBufferPointer(start: nil, count: 0)
    var physicalLine = 1
    var chunkStart = 0
    var chunkEnd = 0
    var eof = false
}

/// A flat, growable run of `Element`s the reader owns (freed by `deallocate`): appends are a
/// capacity test and a copy, with no uniqueness check.
struct GrowableBuffer<Element: BitwiseCopyable> {
    private(set) var base: UnsafeMutablePointer<Element>
    private(set) var capacity: Int
    var count = 0

    init(capacity: Int) {
        self.capacity = capacity
        base = UnsafeMutablePointer<Element>.allocate(capacity: capacity)
    }

    @inline(__always) mutating func append(_ value: Element) {
        if count == capacity { grow(to: count + 1) }
        base[count] = value
        count += 1
    }

    @inline(__always) mutating func append(_ source: UnsafePointer<Element>, _ n: Int) {
        if count + n > capacity { grow(to: count + n) }
        (base + count).update(from: source, count: n)
        count += n
    }

    @inline(never) mutating func grow(to needed: Int) {
        var newCapacity = capacity * 2
        while newCapacity < needed { newCapacity *= 2 }
        let grown = UnsafeMutablePointer<Element>.allocate(capacity: newCapacity)
        grown.update(from: base, count: count)
        base.deallocate()
        base = grown
        capacity = newCapacity
    }

    /// Gives back a large allocation; the contents are dropped.
    mutating func shrink(to smaller: Int) {
        base.deallocate()
        base = UnsafeMutablePointer<Element>.allocate(capacity: smaller)
        capacity = smaller
        count = 0
    }

    func deallocate() { base.deallocate() }
}
