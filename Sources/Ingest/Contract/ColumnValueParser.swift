#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What one field came to.
public enum FieldOutcome: Equatable, Sendable {
    /// A value, written normalised.
    case value
    /// NULL (an absent member, JSON null, or a NULL token), written as `null`.
    case null
    /// Refused: the reason, and whether the value is worth quoting beside it.
    case rejected(String, showValue: Bool)
}

/// One contract column compiled for the hot path: reads a field's bytes, applies the type and
/// the rules, and writes the normalised JSON value (`42`, `"12.50"`, `"2024-01-30T10:15:23.123Z"`).
///
/// No `String` per value unless it is rejected; every reason text is made once, here.
public final class ColumnValueParser {
    public let column: ContractColumn
    /// `,"name":` as written before the value.
    let memberPrefix: [UInt8]
    private let nullTokens: WordList
    private let kind: Kind
    /// What the rules compile to; one `let` of the class, so reading a field is a plain load
    /// (a class's `var` is checked for exclusive access at run time).
    struct Compiled {
        var lowerInteger: Int64 = .min, upperInteger: Int64 = .max
        var lowerDecimal: DecimalDigits?, upperDecimal: DecimalDigits?
        var lowerDouble: Double = -.infinity, upperDouble: Double = .infinity
        var lowerMicros: Int64 = .min, upperMicros: Int64 = .max
        var lowerReason = "", upperReason = ""
        var accepted = WordList([])
        var acceptedJSON = WordList([])
        var unknownValueReason = ""
        var regex: RegularExpression?
        var patterns: [[UInt8]?] = []
        var futureReason = ""
        var scaleReason = ""
        var trueValues = WordList([]), falseValues = WordList([])
        var minLengthReason = "", maxLengthReason = ""

    }
    private let c: Compiled
    private let typeRangeReason: String
    /// The day of the last timestamp read and written: a file's rows mostly share one, so its
    /// date's day number and its `YYYY-MM-DD` text are made once (`CivilTime.Day`). The parser
    /// belongs to one normaliser, used by one thread.
    @exclusivity(unchecked) private var day = CivilTime.Day()

    enum Kind {
        case integer, numeric
        case float(single: Bool)
        case text, boolean, date
        case timestamp(zoned: Bool)
        case uuid, json
    }

    /// The longest a value's normalised text can grow past its input text.
    var maxGrowth: Int { 64 + (column.rules.scale ?? 0) }

    /// Why a column cannot be compiled (a bound that is not of its type); nil when it can.
    static func problem(with column: ContractColumn) -> String? {
        do {
            _ = try ColumnValueParser(checking: column)
            return nil
        } catch {
            return error.problem
        }
    }

    struct CompileError: Error { var problem: String }

    public convenience init(_ column: ContractColumn) {
        // The reader checked the column: compiling it again cannot fail.
        try! self.init(checking: column)
    }

    private init(checking column: ContractColumn) throws(CompileError) {
        var c = Compiled()
        self.column = column
        var prefix: [UInt8] = [UInt8(ascii: ",")]
        JSONWriter.appendString(column.name, &prefix)
        prefix.append(UInt8(ascii: ":"))
        memberPrefix = prefix
        nullTokens = WordList(column.nullValues.map { Array($0.utf8) })
        let rules = column.rules
        kind = Self.kind(of: column.type)
        typeRangeReason = "out of range for \(column.type)"
        try Self.compileBounds(rules, of: column, kind: kind, into: &c)
        if let values = rules.acceptedValues {
            let kind = self.kind
            c.accepted = WordList(values.map { Array((rules.caseSensitive ? $0 : $0.lowercased()).utf8) })
            c.acceptedJSON = WordList(
                values.map { v in
                    var json: [UInt8] = []
                    if case .integer = kind { json.append(contentsOf: v.utf8) } else { JSONWriter.appendString(v, &json) }
                    return json
                })
            if case .integer = kind, values.contains(where: { Int64($0) == nil }) {
                throw CompileError(problem: "accepted_values of an integer column must be integers")
            }
            c.unknownValueReason = "unknown \(column.name.replacingUnderscores) (expected \(values.joined(separator: ", ")))"
        }
        if let p = rules.pattern { c.regex = RegularExpression(p) }
        c.patterns = rules.formats.map { if case .pattern(let p) = $0 { Array(p.utf8) } else { nil } }
        if let f = rules.maxFutureMilliseconds { c.futureReason = ValidationReason.inFuture(f) }
        if let s = rules.scale { c.scaleReason = "more than \(numberWord(s)) decimal place\(s == 1 ? "" : "s")" }
        c.trueValues = WordList(rules.trueValues.map { Array($0.utf8) })
        c.falseValues = WordList(rules.falseValues.map { Array($0.utf8) })
        if let m = rules.minLength { c.minLengthReason = "shorter than \(m) character\(m == 1 ? "" : "s")" }
        if let m = rules.maxLength { c.maxLengthReason = "longer than \(m) character\(m == 1 ? "" : "s")" }
        self.c = c
    }

    /// How a value of `type` is read.
    private static func kind(of type: ColumnType) -> Kind {
        switch type {
        case .smallint, .integer, .bigint: return .integer
        case .numeric: return .numeric
        case .real: return .float(single: true)
        case .doublePrecision: return .float(single: false)
        case .text, .varchar: return .text
        case .boolean: return .boolean
        case .date: return .date
        case .timestamp: return .timestamp(zoned: false)
        case .timestamptz: return .timestamp(zoned: true)
        case .uuid: return .uuid
        case .json, .jsonb: return .json
        }
    }

    /// The range rule's bounds, parsed once as values of the column's type, and their reasons.
    private static func compileBounds(
        _ rules: ColumnRules, of column: ContractColumn, kind: Kind, into c: inout Compiled
    ) throws(CompileError) {
        func bad(_ bound: ColumnRules.Bound) -> CompileError {
            CompileError(problem: "range bound \(quotedForMessage(bound.text)) is not a value of type \(column.type)")
        }
        let bothInclusive = rules.lower.map { !$0.exclusive } ?? false && rules.upper.map { !$0.exclusive } ?? false
        if let l = rules.lower {
            c.lowerReason = bothInclusive ? "out of range \(l.text)…\(rules.upper!.text)" : "must be \(l.exclusive ? ">" : ">=") \(l.text)"
        }
        if let u = rules.upper {
            c.upperReason = bothInclusive ? c.lowerReason : "must be \(u.exclusive ? "<" : "<=") \(u.text)"
        }
        switch kind {
        case .integer:
            let range = column.type.integerRange!
            c.lowerInteger = range.lowerBound
            c.upperInteger = range.upperBound
            if let l = rules.lower {
                guard let v = Int64(l.text) else { throw bad(l) }
                c.lowerInteger = max(c.lowerInteger, l.exclusive ? v &+ 1 : v)
            }
            if let u = rules.upper {
                guard let v = Int64(u.text) else { throw bad(u) }
                c.upperInteger = min(c.upperInteger, u.exclusive ? v &- 1 : v)
            }
        case .numeric:
            if let l = rules.lower {
                guard let d = DecimalDigits(l.text) else { throw bad(l) }
                c.lowerDecimal = d
            }
            if let u = rules.upper {
                guard let d = DecimalDigits(u.text) else { throw bad(u) }
                c.upperDecimal = d
            }
        case .float:
            if let l = rules.lower {
                guard let v = Double(l.text) else { throw bad(l) }
                c.lowerDouble = v
            }
            if let u = rules.upper {
                guard let v = Double(u.text) else { throw bad(u) }
                c.upperDouble = v
            }
        case .date, .timestamp:
            let isDate = column.type == .date
            func micros(_ b: ColumnRules.Bound) throws(CompileError) -> Int64 {
                var text = b.text
                let parsed = text.withUTF8 { TemporalText.parseISO(UnsafeRawBufferPointer($0), date: isDate) }
                guard case .value(let c) = parsed, let m = ColumnValueParser.instant(c, defaultOffset: rules.utcOffsetSeconds)
                else { throw bad(b) }
                return m
            }
            if let l = rules.lower { c.lowerMicros = try micros(l) &+ (l.exclusive ? 1 : 0) }
            if let u = rules.upper { c.upperMicros = try micros(u) &- (u.exclusive ? 1 : 0) }
        default: break
        }
    }

    /// The normalised JSON text of a value written in the contract (a check's `equals`), or
    /// nil when the column would refuse it.
    public func normalisedForm(of value: String) -> [UInt8]? {
        var json: [UInt8] = []
        JSONWriter.appendString(value, &json)
        let scratch = RecordScratch(capacity: json.count * 2 + maxGrowth + 64)
        return json.withUnsafeBytes { bytes -> [UInt8]? in
            var decoder = LineDecoder()
            var line: [UInt8] = Array("{\"v\":".utf8) + Array(bytes) + [UInt8(ascii: "}")]
            return line.withUnsafeMutableBytes { l -> [UInt8]? in
                guard let scanned = try? decoder.decode(UnsafeRawBufferPointer(l)) else { return nil }
                var w = RecordBytes(scratch.bytes)
                guard parse(scanned, scanned.members.first, nowMicros: .max / 2, into: &w) == .value else { return nil }
                return Array(UnsafeRawBufferPointer(start: scratch.bytes, count: scratch.bytes.distance(to: w.p)))
            }
        }
    }

    /// Reads the member `m` of `line` (nil: absent) and writes its normalised value at `w`.
    /// `nowMicros` is the clock for `max_future`.
    @inline(__always)
    func parse(_ line: ProtocolLine, _ m: JSONMember?, nowMicros: Int64, into w: inout RecordBytes) -> FieldOutcome {
        guard let m, m.kind != .null else { return null(&w) }
        switch m.kind {
        case .string:
            if !m.valueEscaped {
                let inner = UnsafeRawBufferPointer(rebasing: line.bytes[(m.valueStart + 1)..<(m.valueEnd - 1)])
                return parseText(inner, span: line.span(m), nowMicros: nowMicros, &w)
            }
            return line.withStringBytes(m) { parseText($0, span: nil, nowMicros: nowMicros, &w) }
        case .number:
            if case .json = kind { return copy(line.span(m), &w) }
            if case .text = kind { return parseText(line.span(m), span: nil, nowMicros: nowMicros, &w) }
            return parseText(line.span(m), span: nil, nowMicros: nowMicros, &w, isNumber: true)
        case .true, .false:
            switch kind {
            case .boolean:
                w.put(m.kind == .true ? "true" : "false")
                return .value
            case .json: return copy(line.span(m), &w)
            default: return parseText(line.span(m), span: nil, nowMicros: nowMicros, &w)
            }
        default:
            if case .json = kind { return copy(line.span(m), &w) }
            return .rejected(notAReason, showValue: true)
        }
    }

    @inline(__always)
    private func null(_ w: inout RecordBytes) -> FieldOutcome {
        if column.notNull { return .rejected("required", showValue: false) }
        w.put("null")
        return .null
    }

    private func copy(_ span: UnsafeRawBufferPointer, _ w: inout RecordBytes) -> FieldOutcome {
        w.put(span)
        return .value
    }

    /// The reason for a value that is not of the type at all.
    var notAReason: String {
        switch kind {
        case .integer: "not an integer"
        case .numeric: "not a decimal"
        case .float: "not a number"
        case .text: "not text"
        case .boolean: "not a boolean"
        case .date: TemporalReason.notDate
        case .timestamp: TemporalReason.notDateTime
        case .uuid: "not a UUID"
        case .json: "not JSON"
        }
    }

    /// A string's decoded bytes (or a literal's text). `span` is the JSON text of an unescaped
    /// string, which a text value can be copied from as it is.
    @inline(__always)
    private func parseText(
        _ raw: UnsafeRawBufferPointer, span: UnsafeRawBufferPointer?, nowMicros: Int64, _ w: inout RecordBytes, isNumber: Bool = false
    ) -> FieldOutcome {
        let trimmed = column.trim ? FieldRules.trimmed(raw) : raw
        if isNullToken(column.trim ? trimmed : raw) { return null(&w) }
        switch kind {
        case .integer: return integer(trimmed, &w)
        case .numeric: return numeric(trimmed, &w)
        case .float(let single): return float(trimmed, single: single, &w)
        case .text:
            return text(trimmed, span: trimmed.count == raw.count ? span : nil, &w)
        case .boolean: return boolean(trimmed, &w)
        case .uuid:
            guard let id = RowKey(trimmed) else { return .rejected(notAReason, showValue: true) }
            w.put(UInt8(ascii: "\""))
            w.advance(id.writeText(to: w.p))
            w.put(UInt8(ascii: "\""))
            return .value
        case .date: return temporal(trimmed, date: true, zoned: false, nowMicros: nowMicros, &w)
        case .timestamp(let zoned): return temporal(trimmed, date: false, zoned: zoned, nowMicros: nowMicros, &w)
        case .json:
            guard isJSONValue(trimmed) else { return .rejected(notAReason, showValue: true) }
            w.put(trimmed)
            return .value
        }
    }

    @inline(__always)
    private func isNullToken(_ bytes: UnsafeRawBufferPointer) -> Bool {
        nullTokens.index(of: bytes, fold: false) != nil
    }

    private func integer(_ t: UnsafeRawBufferPointer, _ w: inout RecordBytes) -> FieldOutcome {
        let n = t.count
        var i = 0
        let negative = n > 0 && t[0] == UInt8(ascii: "-")
        if negative { i = 1 }
        guard i < n else { return .rejected("not an integer", showValue: true) }
        if n - i <= 18 { return shortInteger(t, from: i, negative: negative, &w) }
        var magnitude: UInt64 = 0
        var overflow = false
        while i < n {
            let d = UInt64(t[i]) &- 0x30
            guard d <= 9 else { return .rejected("not an integer", showValue: true) }
            let (m1, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (m2, o2) = m1.addingReportingOverflow(d)
            if o1 || o2 { overflow = true } else { magnitude = m2 }
            i += 1
        }
        let value: Int64
        if overflow || magnitude > UInt64(Int64.max) + (negative ? 1 : 0) {
            return .rejected(rangeReason(negative: negative), showValue: true)
        } else {
            value = negative ? Int64(truncatingIfNeeded: 0 &- magnitude) : Int64(magnitude)
        }
        if value < c.lowerInteger { return .rejected(rangeReason(negative: true), showValue: true) }
        if value > c.upperInteger { return .rejected(rangeReason(negative: false), showValue: true) }
        if !c.accepted.isEmpty {
            guard let index = acceptedIndex(t, fold: false) else { return .rejected(c.unknownValueReason, showValue: true) }
            _ = index
        }
        if negative && magnitude != 0 { w.put(UInt8(ascii: "-")) }
        w.putUnsigned(magnitude)
        return .value
    }

    /// `integer` for up to 18 digits, which cannot overflow: no overflow checks per digit, and
    /// a value without leading zeros is written as it came (its text is its normal form), not
    /// through a division per digit pair (~100 instructions an integer cell, callgrind).
    @inline(__always)
    private func shortInteger(_ t: UnsafeRawBufferPointer, from start: Int, negative: Bool, _ w: inout RecordBytes) -> FieldOutcome {
        var magnitude: Int64 = 0
        for i in start..<t.count {
            let d = t[i] &- 0x30
            guard d <= 9 else { return .rejected("not an integer", showValue: true) }
            magnitude = magnitude &* 10 &+ Int64(d)
        }
        let value = negative ? -magnitude : magnitude
        if value < c.lowerInteger { return .rejected(rangeReason(negative: true), showValue: true) }
        if value > c.upperInteger { return .rejected(rangeReason(negative: false), showValue: true) }
        if !c.accepted.isEmpty {
            guard acceptedIndex(t, fold: false) != nil else { return .rejected(c.unknownValueReason, showValue: true) }
        }
        if t[start] != UInt8(ascii: "0") {
            w.put(t)
        } else {
            if negative && magnitude != 0 { w.put(UInt8(ascii: "-")) }
            w.putUnsigned(UInt64(magnitude))
        }
        return .value
    }

    /// The declared range's reason for a value past a bound, or the type's own.
    private func rangeReason(negative: Bool) -> String {
        if negative { return column.rules.lower != nil ? c.lowerReason : typeRangeReason }
        return column.rules.upper != nil ? c.upperReason : typeRangeReason
    }

    private func numeric(_ t: UnsafeRawBufferPointer, _ w: inout RecordBytes) -> FieldOutcome {
        guard let d = DecimalSpan(t) else {
            if case .numeric(nil, nil) = column.type, column.rules.lower == nil, column.rules.upper == nil, isNaN(t) {
                w.put("\"NaN\"")
                return .value
            }
            return .rejected("not a decimal", showValue: true)
        }
        if let lower = c.lowerDecimal {
            let order = d.compare(lower)
            if order < 0 || (order == 0 && column.rules.lower!.exclusive) { return .rejected(c.lowerReason, showValue: true) }
        }
        if let scale = column.rules.scale, d.fractionDigits > scale {
            return .rejected(c.scaleReason, showValue: true)
        }
        if let upper = c.upperDecimal {
            let order = d.compare(upper)
            if order > 0 || (order == 0 && column.rules.upper!.exclusive) { return .rejected(c.upperReason, showValue: true) }
        }
        if case .numeric(let p?, let s?) = column.type, d.integerDigits(t) > p - s {
            return .rejected(typeRangeReason, showValue: true)
        }
        d.write(t, scale: column.rules.scale, &w)
        return .value
    }

    /// `inf`, `Infinity` and the like, as against a finite number too large for real.
    private func isInfinityWord(_ t: UnsafeRawBufferPointer) -> Bool {
        t.contains { ($0 | 0x20) == UInt8(ascii: "i") }
    }

    private func isNaN(_ t: UnsafeRawBufferPointer) -> Bool {
        t.count == 3 && (t[0] | 0x20) == UInt8(ascii: "n") && (t[1] | 0x20) == UInt8(ascii: "a") && (t[2] | 0x20) == UInt8(ascii: "n")
    }

    private func float(_ t: UnsafeRawBufferPointer, single: Bool, _ w: inout RecordBytes) -> FieldOutcome {
        guard let v = FloatText.parse(t, single: single) else { return .rejected("not a number", showValue: true) }
        if v.isInfinite && !isInfinityWord(t) { return .rejected(typeRangeReason, showValue: true) }
        if v.isNaN {
            if column.rules.lower != nil || column.rules.upper != nil {
                return .rejected(c.lowerReason.isEmpty ? c.upperReason : c.lowerReason, showValue: true)
            }
        } else {
            if v < c.lowerDouble || (v == c.lowerDouble && column.rules.lower?.exclusive == true) {
                return .rejected(c.lowerReason, showValue: true)
            }
            if v > c.upperDouble || (v == c.upperDouble && column.rules.upper?.exclusive == true) {
                return .rejected(c.upperReason, showValue: true)
            }
        }
        FloatText.write(v, single: single, &w)
        return .value
    }

    private func text(_ t: UnsafeRawBufferPointer, span: UnsafeRawBufferPointer?, _ w: inout RecordBytes) -> FieldOutcome {
        if !c.accepted.isEmpty {
            guard let index = acceptedIndex(t, fold: !column.rules.caseSensitive) else {
                return .rejected(c.unknownValueReason, showValue: true)
            }
            c.acceptedJSON.withWord(index) { w.put($0) }
            return .value
        }
        if let base = t.baseAddress, memchr(base, 0, t.count) != nil { return .rejected("contains a NUL byte", showValue: true) }
        if column.rules.minLength != nil || column.rules.maxLength != nil {
            var characters = 0
            for b in t where b & 0xC0 != 0x80 { characters += 1 }
            if let m = column.rules.minLength, characters < m { return .rejected(c.minLengthReason, showValue: true) }
            if let m = column.rules.maxLength, characters > m { return .rejected(c.maxLengthReason, showValue: true) }
        }
        if let regex = c.regex, !regex.matches(t) { return .rejected("does not match the pattern", showValue: true) }
        if let span {
            w.put(span)
        } else {
            w.putJSONString(t)
        }
        return .value
    }

    @inline(__always)
    private func acceptedIndex(_ t: UnsafeRawBufferPointer, fold: Bool) -> Int? {
        c.accepted.index(of: t, fold: fold)
    }

    private func boolean(_ t: UnsafeRawBufferPointer, _ w: inout RecordBytes) -> FieldOutcome {
        if c.trueValues.index(of: t, fold: true) != nil {
            w.put("true")
        } else if c.falseValues.index(of: t, fold: true) != nil {
            w.put("false")
        } else {
            return .rejected("not a boolean", showValue: true)
        }
        return .value
    }

    private func temporal(
        _ t: UnsafeRawBufferPointer, date: Bool, zoned: Bool, nowMicros: Int64, _ w: inout RecordBytes
    ) -> FieldOutcome {
        var result = TemporalParse.malformed
        for (index, format) in column.rules.formats.enumerated() {
            switch format {
            case .iso8601: result = TemporalText.parseISO(t, date: date)
            case .epochSeconds: result = TemporalText.parseEpoch(t, milliseconds: false)
            case .epochMilliseconds: result = TemporalText.parseEpoch(t, milliseconds: true)
            case .pattern: result = TemporalText.parsePattern(c.patterns[index]!, t)
            }
            if case .malformed = result { continue }
            break
        }
        var micros: Int64
        switch result {
        case .malformed: return .rejected(date ? TemporalReason.notDate : TemporalReason.notDateTime, showValue: true)
        case .noSuchDate: return .rejected(TemporalReason.noSuchDate, showValue: true)
        case .epochMicroseconds(let m): micros = m
        case .value(let c):
            if c.year < 1 { return .rejected(TemporalReason.yearOutOfRange, showValue: true) }
            guard let m = ColumnValueParser.instant(c, defaultOffset: column.rules.utcOffsetSeconds, day: &day) else {
                return .rejected(TemporalReason.misplacedLeapSecond, showValue: true)
            }
            micros = m
        }
        guard micros >= UTCTimestamp.earliestMilliseconds * 1000 && micros < UTCTimestamp.pastLatestMilliseconds * 1000 else {
            return .rejected(TemporalReason.yearOutOfRange, showValue: true)
        }
        if micros < c.lowerMicros { return .rejected(c.lowerReason, showValue: true) }
        if micros > c.upperMicros { return .rejected(c.upperReason, showValue: true) }
        if let f = column.rules.maxFutureMilliseconds, micros > nowMicros + f * 1000 {
            return .rejected(c.futureReason, showValue: true)
        }
        // A timestamp without time zone is written as wall time in the column's zone.
        let shown = zoned || date ? micros : micros + Int64(column.rules.utcOffsetSeconds) * 1_000_000
        w.put(UInt8(ascii: "\""))
        w.advance(CivilTime.write(micros: shown, date: date, zulu: zoned, to: w.p, day: &day))
        w.put(UInt8(ascii: "\""))
        return .value
    }

    /// Microseconds since the epoch of a civil date-time; nil for a leap second that is not
    /// 23:59:60 UTC. A leap second becomes 23:59:59.999999, which keeps it inside its day.
    static func instant(_ c: CivilDateTime, defaultOffset: Int) -> Int64? {
        var day = CivilTime.Day()
        return instant(c, defaultOffset: defaultOffset, day: &day)
    }

    /// `instant`, with the day number of the date `day` last saw kept there.
    static func instant(_ c: CivilDateTime, defaultOffset: Int, day: inout CivilTime.Day) -> Int64? {
        let date = c.year * 10_000 + c.month * 100 + c.day
        if date != day.parsedDate {
            day.parsedDate = date
            day.parsedNumber = Int64(UTCTimestamp.daysFromCivil(year: c.year, month: c.month, day: c.day))
        }
        let days = day.parsedNumber
        let secondOfDay = Int64(c.hour * 3600 + c.minute * 60 + min(c.second, 59))
        let offset = Int64(c.offsetSeconds ?? defaultOffset)
        var micros = (days * 86_400 + secondOfDay - offset) * 1_000_000
        if c.second == 60 {
            let utcSecond = ((micros / 1_000_000) % 86_400 + 86_400) % 86_400
            guard utcSecond == 86_399 else { return nil }
            micros += 999_999
        } else {
            micros += Int64(c.microsecond)
        }
        return micros
    }
}

/// Writing instants as RFC 3339 text.
enum CivilTime {
    /// `YYYY-MM-DD` for a date; else `YYYY-MM-DDThh:mm:ss.fff[fff][Z]`: milliseconds when the
    /// microseconds are whole milliseconds, else all six digits. Returns the count written.
    /// The last day a parser met: the date it parsed and its day number; the day number it
    /// wrote and that day's `YYYY-MM-DD`. Timestamps of one day skip both conversions: callgrind
    /// of validate, ~220 instructions a row of the default contract (one timestamp column).
    struct Day {
        /// `year * 10_000 + month * 100 + day`, -1: none yet.
        var parsedDate = -1
        var parsedNumber: Int64 = 0
        var writtenNumber: Int64 = .min
        var writtenText: (UInt64, UInt16) = (0, 0)
    }

    static func write(micros: Int64, date: Bool, zulu: Bool, to p: UnsafeMutablePointer<UInt8>) -> Int {
        var day = Day()
        return write(micros: micros, date: date, zulu: zulu, to: p, day: &day)
    }

    /// `write`, with the text of the day `day` last wrote kept there.
    static func write(micros: Int64, date: Bool, zulu: Bool, to p: UnsafeMutablePointer<UInt8>, day: inout Day) -> Int {
        var days = micros / 86_400_000_000
        var rest = micros % 86_400_000_000
        if rest < 0 {
            rest += 86_400_000_000
            days -= 1
        }
        @inline(__always) func two(_ v: Int, _ at: Int) {
            p[at] = UInt8(truncatingIfNeeded: 0x30 + v / 10)
            p[at + 1] = UInt8(truncatingIfNeeded: 0x30 + v % 10)
        }
        let raw = UnsafeMutableRawPointer(p)
        if days == day.writtenNumber {
            raw.storeBytes(of: day.writtenText.0, as: UInt64.self)
            raw.storeBytes(of: day.writtenText.1, toByteOffset: 8, as: UInt16.self)
        } else {
            let (y, mo, d) = UTCTimestamp.civilFromDays(Int(days))
            two(y / 100, 0)
            two(y % 100, 2)
            p[4] = UInt8(ascii: "-")
            two(mo, 5)
            p[7] = UInt8(ascii: "-")
            two(d, 8)
            day.writtenNumber = days
            day.writtenText = (raw.loadUnaligned(as: UInt64.self), raw.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
        }
        if date { return 10 }
        let secs = Int(rest / 1_000_000)
        let fraction = Int(rest % 1_000_000)
        p[10] = UInt8(ascii: "T")
        two(secs / 3600, 11)
        p[13] = UInt8(ascii: ":")
        two(secs / 60 % 60, 14)
        p[16] = UInt8(ascii: ":")
        two(secs % 60, 17)
        p[19] = UInt8(ascii: ".")
        var k = 20
        let digits = fraction % 1000 == 0 ? 3 : 6
        var scaled = digits == 3 ? fraction / 1000 : fraction
        for i in stride(from: digits - 1, through: 0, by: -1) {
            p[k + i] = UInt8(truncatingIfNeeded: 0x30 + scaled % 10)
            scaled /= 10
        }
        k += digits
        if zulu {
            p[k] = UInt8(ascii: "Z")
            k += 1
        }
        return k
    }
}

/// Short words (NULL tokens, c.accepted values) back to back in one buffer: a lookup touches no
/// array of arrays (each inner array's retain and release cost more than the compare).
/// Public and inlinable for validate's row checks (Sources/Validating), which test values per row.
public struct WordList: Sendable {
    @usableFromInline let bytes: [UInt8]
    /// Word i is `bytes[ends[i - 1]..<ends[i]]`.
    @usableFromInline let ends: [Int]

    public init(_ words: [[UInt8]]) {
        bytes = words.flatMap { $0 }
        var ends: [Int] = []
        var total = 0
        for w in words {
            total += w.count
            ends.append(total)
        }
        self.ends = ends
    }

    var isEmpty: Bool { ends.isEmpty }

    /// The index of the word equal to `t` (ASCII letters of `t` lowercased first when `fold`).
    @inlinable @inline(__always)
    public func index(of t: UnsafeRawBufferPointer, fold: Bool) -> Int? {
        bytes.withUnsafeBufferPointer { b in
            ends.withUnsafeBufferPointer { e in
                var start = 0
                outer: for i in 0..<e.count {
                    let end = e[i]
                    defer { start = end }
                    guard end - start == t.count else { continue }
                    for k in 0..<t.count {
                        var c = t[k]
                        if fold && c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") { c |= 0x20 }
                        if c != b[start + k] { continue outer }
                    }
                    return i
                }
                return nil
            }
        }
    }

    func withWord<R>(_ i: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        let start = i == 0 ? 0 : ends[i - 1]
        return bytes.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[start..<ends[i]])) }
    }
}

/// A decimal as its parts, for bounds (owned digits).
struct DecimalDigits {
    var negative: Bool
    /// Integer digits without leading zeros; fraction digits without trailing zeros.
    var integer: [UInt8]
    var fraction: [UInt8]

    init?(_ text: String) {
        var copy = text
        guard
            let parsed = copy.withUTF8({ s -> DecimalDigits? in
                let t = UnsafeRawBufferPointer(s)
                guard let span = DecimalSpan(t) else { return nil }
                return DecimalDigits(span, t)
            })
        else { return nil }
        self = parsed
    }

    init(_ span: DecimalSpan, _ t: UnsafeRawBufferPointer) {
        negative = span.negative
        integer = Array(t[span.integerStart..<span.integerEnd])
        fraction = Array(t[span.fractionStart..<span.fractionEnd])
        while let f = integer.first, f == 0x30 { integer.removeFirst() }
        while let l = fraction.last, l == 0x30 { fraction.removeLast() }
        if integer.isEmpty && fraction.isEmpty { negative = false }
    }
}

/// A decimal `-?digits[.digits]` inside the bytes it was read from.
struct DecimalSpan {
    var negative: Bool
    var integerStart: Int, integerEnd: Int
    var fractionStart: Int, fractionEnd: Int
    /// The bytes, kept for comparisons (valid as long as the caller's buffer).
    let base: UnsafeRawBufferPointer

    var fractionDigits: Int { fractionEnd - fractionStart }

    init?(_ t: UnsafeRawBufferPointer) {
        base = t
        var i = 0
        negative = t.count > 0 && t[0] == UInt8(ascii: "-")
        if negative { i = 1 }
        integerStart = i
        while i < t.count, t[i] &- 0x30 <= 9 { i += 1 }
        integerEnd = i
        guard integerEnd > integerStart else { return nil }
        fractionStart = i
        fractionEnd = i
        if i < t.count && t[i] == UInt8(ascii: ".") {
            i += 1
            fractionStart = i
            while i < t.count, t[i] &- 0x30 <= 9 { i += 1 }
            fractionEnd = i
            guard fractionEnd > fractionStart else { return nil }
        }
        guard i == t.count else { return nil }
    }

    /// Integer digits once leading zeros are dropped.
    func integerDigits(_ t: UnsafeRawBufferPointer) -> Int {
        var s = integerStart
        while s < integerEnd && t[s] == 0x30 { s += 1 }
        return integerEnd - s
    }

    func significantFractionDigits(_ t: UnsafeRawBufferPointer) -> Int {
        var e = fractionEnd
        while e > fractionStart && t[e - 1] == 0x30 { e -= 1 }
        return e - fractionStart
    }

    func hasNonZeroFraction(_ t: UnsafeRawBufferPointer, beyond places: Int) -> Bool {
        var k = fractionStart + places
        while k < fractionEnd {
            if t[k] != 0x30 { return true }
            k += 1
        }
        return false
    }

    var isZero: Bool {
        for k in integerStart..<integerEnd where base[k] != 0x30 { return false }
        for k in fractionStart..<fractionEnd where base[k] != 0x30 { return false }
        return true
    }

    /// -1, 0, 1 as this value is below, at or above `b`.
    func compare(_ b: DecimalDigits) -> Int {
        let aNegative = negative && !isZero
        if aNegative != b.negative { return aNegative ? -1 : 1 }
        let sign = aNegative ? -1 : 1
        var s = integerStart
        while s < integerEnd && base[s] == 0x30 { s += 1 }
        let aInt = integerEnd - s
        if aInt != b.integer.count { return aInt < b.integer.count ? -sign : sign }
        for k in 0..<aInt where base[s + k] != b.integer[k] { return base[s + k] < b.integer[k] ? -sign : sign }
        let n = max(fractionDigits, b.fraction.count)
        for k in 0..<n {
            let x = k < fractionDigits ? base[fractionStart + k] : 0x30
            let y = k < b.fraction.count ? b.fraction[k] : 0x30
            if x != y { return x < y ? -sign : sign }
        }
        return 0
    }

    /// Writes the value as a JSON string: no leading zeros, `scale` places when given (padded
    /// with zeros; the caller refused more), `-` only for a value that is not zero.
    func write(_ t: UnsafeRawBufferPointer, scale: Int?, _ w: inout RecordBytes) {
        w.put(UInt8(ascii: "\""))
        if negative && !isZero { w.put(UInt8(ascii: "-")) }
        var s = integerStart
        while s < integerEnd - 1 && t[s] == 0x30 { s += 1 }
        w.put(UnsafeRawBufferPointer(rebasing: t[s..<integerEnd]))
        let places = scale ?? fractionDigits
        if places > 0 {
            w.put(UInt8(ascii: "."))
            let have = min(fractionDigits, places)
            w.put(UnsafeRawBufferPointer(rebasing: t[fractionStart..<(fractionStart + have)]))
            for _ in have..<places { w.put(UInt8(ascii: "0")) }
        }
        w.put(UInt8(ascii: "\""))
    }
}

/// Floating-point text: `-?digits[.digits][e±digits]`, `NaN`, `Infinity`, `-Infinity`, `inf`.
enum FloatText {
    static func parse(_ t: UnsafeRawBufferPointer, single: Bool = false) -> Double? {
        guard !t.isEmpty, t.count < 400 else { return nil }
        if let word = special(t) { return word }
        var i = 0
        if t[0] == UInt8(ascii: "-") { i = 1 }
        let digitsStart = i
        while i < t.count, t[i] &- 0x30 <= 9 { i += 1 }
        var digits = i - digitsStart
        if i < t.count && t[i] == UInt8(ascii: ".") {
            i += 1
            let f = i
            while i < t.count, t[i] &- 0x30 <= 9 { i += 1 }
            digits += i - f
        }
        guard digits > 0 else { return nil }
        if i < t.count && (t[i] | 0x20) == UInt8(ascii: "e") {
            i += 1
            if i < t.count && (t[i] == UInt8(ascii: "+") || t[i] == UInt8(ascii: "-")) { i += 1 }
            let e = i
            while i < t.count, t[i] &- 0x30 <= 9 { i += 1 }
            guard i > e else { return nil }
        }
        guard i == t.count else { return nil }
        // strtof for real: a decimal rounded to double and then to float can land on the
        // other neighbour of the nearest float (double rounding); the server reads it with
        // strtof. The text is NUL-terminated on the stack (an array per value was ~30 % of a
        // real or double cell's cost, callgrind).
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: t.count + 1) { buffer in
            UnsafeMutableRawPointer(buffer.baseAddress!).copyMemory(from: t.baseAddress!, byteCount: t.count)
            buffer[t.count] = 0
            return single ? Double(strtof(buffer.baseAddress!, nil)) : strtod(buffer.baseAddress!, nil)
        }
    }

    /// `NaN`, `Infinity`, `inf` and their signed forms, any case.
    /// A value that starts with a digit (after its sign) is none of them, and returns at once:
    /// the word tests (a nested function capturing a `var`, so a dynamic exclusivity check
    /// each) were ~350 instructions per float cell, callgrind.
    private static func special(_ t: UnsafeRawBufferPointer) -> Double? {
        guard t.count >= 3, t.count <= 9 else { return nil }
        var negative = false
        var start = 0
        if t[0] == UInt8(ascii: "-") || t[0] == UInt8(ascii: "+") {
            negative = t[0] == UInt8(ascii: "-")
            start = 1
        }
        let first = t[start] | 0x20
        guard first == UInt8(ascii: "n") || first == UInt8(ascii: "i") else { return nil }
        if start == 0 && word(t, 0, "nan") { return .nan }
        if word(t, start, "infinity") || word(t, start, "inf") { return negative ? -.infinity : .infinity }
        return nil
    }

    /// Whether `t` from `start` is `w` (lowercase), any case.
    private static func word(_ t: UnsafeRawBufferPointer, _ start: Int, _ w: StaticString) -> Bool {
        guard t.count - start == w.utf8CodeUnitCount else { return false }
        for k in 0..<w.utf8CodeUnitCount where (t[start + k] | 0x20) != w.utf8Start[k] { return false }
        return true
    }

    /// A JSON number, or the strings `"NaN"`, `"Infinity"`, `"-Infinity"` (JSON has no such
    /// numbers; `load` reads them back).
    static func write(_ v: Double, single: Bool, _ w: inout RecordBytes) {
        if v.isNaN { return w.put("\"NaN\"") }
        if v.isInfinite { return w.put(v > 0 ? "\"Infinity\"" : "\"-Infinity\"") }
        var text = single ? Float(v).description : v.description
        text.withUTF8 { w.put(UnsafeRawBufferPointer($0)) }
    }
}

/// Whether `t` is one JSON value (any kind), for json and jsonb columns.
@inline(__always)
func isJSONValue(_ t: UnsafeRawBufferPointer) -> Bool { JSONObjectScanner.isValue(t) }

/// `two`, `ten`, `12`: small numbers in words, as reasons read.
func numberWord(_ n: Int) -> String {
    let words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    return n >= 0 && n < words.count ? words[n] : String(n)
}

extension String {
    /// `event_type` → `event type`, for reasons.
    var replacingUnderscores: String { String(map { $0 == "_" ? " " : $0 }) }
}
