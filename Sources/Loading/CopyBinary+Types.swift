import Ingest

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One encoder per wire format, each writing what the type's `*recv` function in PostgreSQL
/// reads (src/backend/utils/adt: int2recv/int4recv/int8recv, numeric_recv, float4recv,
/// float8recv, textrecv, boolrecv, date_recv, timestamp_recv, uuid_recv, json_recv,
/// jsonb_recv): a length word, then the value. Each returns false for a value not in the
/// canonical form `validate` writes, leaving the row to the text path.
extension CopyBinary {
    @inline(__always)
    static func appendValue(_ m: JSONMember, of line: ProtocolLine, as format: WireFormat, _ out: inout TupleWriter) -> Bool {
        switch (format, m.kind) {
        case (.uuid, .string): return line.withStringBytes(m) { appendUUID($0, &out) }
        case (.int4, .number): return appendInteger(line.span(m), width: 4, &out)
        case (.int8, .number): return appendInteger(line.span(m), width: 8, &out)
        case (.int2, .number): return appendInteger(line.span(m), width: 2, &out)
        case (.text, .string): return line.withStringBytes(m) { appendText($0, &out) }
        case (.numeric, .string): return line.withStringBytes(m) { appendNumeric($0, &out) }
        case (.numeric, .number): return appendNumeric(line.span(m), &out)
        case (.timestamptz, .string): return line.withStringBytes(m) { appendTimestamp($0, zoned: true, &out) }
        case (.timestamp, .string): return line.withStringBytes(m) { appendTimestamp($0, zoned: false, &out) }
        case (.date, .string): return line.withStringBytes(m) { appendDate($0, &out) }
        case (.float8, .number): return appendFloat(line.span(m), single: false, &out)
        case (.float4, .number): return appendFloat(line.span(m), single: true, &out)
        case (.float8, .string): return line.withStringBytes(m) { appendFloatWord($0, single: false, &out) }
        case (.float4, .string): return line.withStringBytes(m) { appendFloatWord($0, single: true, &out) }
        case (.bool, .true), (.bool, .false):
            out.integer(Int32(1))
            out.integer(UInt8(m.kind == .true ? 1 : 0))
            return true
        case (.json, _):
            let span = line.span(m)
            out.integer(Int32(span.count))
            out.bytes(span)
            return true
        case (.jsonb, _):
            let span = line.span(m)
            out.integer(Int32(span.count + 1))
            out.integer(UInt8(1))  // jsonb's binary format version
            out.bytes(span)
            return true
        default: return false
        }
    }

    /// Text bytes as they are; NUL cannot be stored, so it is left to the text path (where the
    /// server names the problem).
    @inline(__always)
    static func appendText(_ text: UnsafeRawBufferPointer, _ out: inout TupleWriter) -> Bool {
        guard text.isEmpty || memchr(text.baseAddress!, 0, text.count) == nil else { return false }
        out.integer(Int32(text.count))
        out.bytes(text)
        return true
    }

    /// 8-4-4-4-12 hex digits (either case) as 16 bytes.
    static func appendUUID(_ text: UnsafeRawBufferPointer, _ out: inout TupleWriter) -> Bool {
        // validate's reader, eight digits per word: the digit-by-digit decoder was ~430
        // instructions a row of load (callgrind), the most of any column.
        guard let key = RowKey(text) else { return false }
        out.integer(Int32(16))
        out.integer(Int64(bitPattern: key.high))
        out.integer(Int64(bitPattern: key.low))
        return true
    }

    /// A JSON integer that fits the column's width (2, 4 or 8 bytes); others go to the text
    /// path, where the server reports the range.
    @inline(__always)
    static func appendInteger(_ text: UnsafeRawBufferPointer, width: Int, _ out: inout TupleWriter) -> Bool {
        guard let value = parseInteger(text) else { return false }
        switch width {
        case 2:
            guard let v = Int16(exactly: value) else { return false }
            out.integer(Int32(2))
            out.integer(v)
        case 4:
            guard let v = Int32(exactly: value) else { return false }
            out.integer(Int32(4))
            out.integer(v)
        default:
            out.integer(Int32(8))
            out.integer(value)
        }
        return true
    }

    /// `-?digits` (at most 19 digits) within int64, else nil.
    @inline(__always)
    static func parseInteger(_ text: UnsafeRawBufferPointer) -> Int64? {
        var i = 0
        let negative = !text.isEmpty && text[0] == UInt8(ascii: "-")
        if negative { i = 1 }
        let digits = text.count - i
        guard digits >= 1, digits <= 19 else { return nil }
        var magnitude: UInt64 = 0
        while i < text.count {
            let d = text[i] &- UInt8(ascii: "0")
            guard d < 10 else { return nil }
            magnitude = magnitude &* 10 &+ UInt64(d)  // 19 digits stay below 2^64
            i += 1
        }
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
            return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
        }
        guard magnitude <= UInt64(Int64.max) else { return nil }
        return Int64(magnitude)
    }

    /// `NaN`, or `-?digits(.digits)?` of any length numeric allows, as a numeric: base-10000
    /// digits, weight, sign and display scale (numeric_send's layout; the server applies the
    /// column's precision and scale, rounding as it does for text).
    static func appendNumeric(_ text: UnsafeRawBufferPointer, _ out: inout TupleWriter) -> Bool {
        if text.count == 3 && text[0] == UInt8(ascii: "N") && text[1] == UInt8(ascii: "a") && text[2] == UInt8(ascii: "N") {
            out.integer(Int32(8))
            out.integer(Int16(0))
            out.integer(Int16(0))
            out.integer(UInt16(0xC000))  // NUMERIC_NAN
            out.integer(Int16(0))
            return true
        }
        var i = 0
        let negative = !text.isEmpty && text[0] == UInt8(ascii: "-")
        if negative { i = 1 }
        let intStart = i
        while i < text.count && text[i] &- UInt8(ascii: "0") < 10 { i += 1 }
        let intEnd = i
        var fracStart = i
        var fracEnd = i
        if i < text.count && text[i] == UInt8(ascii: ".") {
            i += 1
            fracStart = i
            while i < text.count && text[i] &- UInt8(ascii: "0") < 10 { i += 1 }
            fracEnd = i
            guard fracEnd > fracStart else { return false }
        }
        guard i == text.count, intEnd > intStart else { return false }
        var s = intStart
        while s < intEnd && text[s] == UInt8(ascii: "0") { s += 1 }
        let intDigits = intEnd - s
        let fracDigits = fracEnd - fracStart
        // numeric's own limits (NUMERIC_MAX_DISPLAY_SCALE-ish bounds of the format).
        guard intDigits <= 131_072, fracDigits <= 16_383 else { return false }
        // Groups of four decimal digits aligned on the decimal point: the integer part padded
        // on the left, the fraction on the right. Read from the text as needed (no array).
        let lead = (4 - intDigits % 4) % 4
        let intGroups = (intDigits + lead) / 4
        let total = intGroups + (fracDigits + 3) / 4
        @inline(__always) func digit(_ k: Int) -> Int {
            if k < lead { return 0 }
            if k < lead + intDigits { return Int(text[s + k - lead] &- UInt8(ascii: "0")) }
            let f = k - lead - intDigits
            return f < fracDigits ? Int(text[fracStart + f] &- UInt8(ascii: "0")) : 0
        }
        @inline(__always) func group(_ g: Int) -> Int16 {
            let k = 4 * g
            return Int16(digit(k) * 1000 + digit(k + 1) * 100 + digit(k + 2) * 10 + digit(k + 3))
        }
        var first = 0
        while first < total && group(first) == 0 { first += 1 }
        var last = total
        while last > first && group(last - 1) == 0 { last -= 1 }
        let digits = last - first
        out.integer(Int32(8 + 2 * digits))
        out.integer(Int16(digits))
        out.integer(Int16(digits == 0 ? 0 : intGroups - 1 - first))
        out.integer(UInt16(digits > 0 && negative ? 0x4000 : 0))
        out.integer(Int16(fracDigits))
        for g in first..<last { out.integer(group(g)) }
        return true
    }

    /// A JSON number as float4 or float8 (the same C conversion float4in/float8in use, so
    /// both paths store the same bits). Out of range (overflow, or underflow to zero): the
    /// text path, where the server refuses it.
    static func appendFloat(_ text: UnsafeRawBufferPointer, single: Bool, _ out: inout TupleWriter) -> Bool {
        guard text.count < 64 else { return false }
        for c in text
        where
            !(c &- UInt8(ascii: "0") < 10 || c == UInt8(ascii: ".") || c == UInt8(ascii: "-") || c == UInt8(ascii: "+")
            || c | 0x20 == UInt8(ascii: "e"))
        {
            return false
        }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer in
            let p = buffer.baseAddress!
            UnsafeMutableRawPointer(p).copyMemory(from: text.baseAddress!, byteCount: text.count)
            p[text.count] = 0
            var end: UnsafeMutablePointer<CChar>? = nil
            errno = 0
            if single {
                let v = strtof(p, &end)
                guard end == p + text.count, errno == 0 || (v != 0 && v.isFinite), v.isFinite else { return false }
                out.integer(Int32(4))
                out.integer(v.bitPattern)
            } else {
                let v = strtod(p, &end)
                guard end == p + text.count, errno == 0 || (v != 0 && v.isFinite), v.isFinite else { return false }
                out.integer(Int32(8))
                out.integer(v.bitPattern)
            }
            return true
        }
    }

    /// `NaN`, `Infinity`, `-Infinity`: the strings `validate` writes for what JSON has no number for.
    static func appendFloatWord(_ text: UnsafeRawBufferPointer, single: Bool, _ out: inout TupleWriter) -> Bool {
        let value: Double
        if equals(text, "NaN") {
            value = .nan
        } else if equals(text, "Infinity") {
            value = .infinity
        } else if equals(text, "-Infinity") {
            value = -.infinity
        } else {
            return false
        }
        if single {
            out.integer(Int32(4))
            out.integer(Float(value).bitPattern)
        } else {
            out.integer(Int32(8))
            out.integer(value.bitPattern)
        }
        return true
    }

    @inline(__always)
    static func equals(_ text: UnsafeRawBufferPointer, _ word: StaticString) -> Bool {
        guard text.count == word.utf8CodeUnitCount else { return false }
        for k in 0..<text.count where text[k] != word.utf8Start[k] { return false }
        return true
    }

    /// Two or four digits at `at`, or -1.
    @inline(__always)
    static func number(_ text: UnsafeRawBufferPointer, _ at: Int, _ width: Int) -> Int {
        var v = 0
        for k in at..<(at + width) {
            let d = text[k] &- UInt8(ascii: "0")
            guard d < 10 else { return -1 }
            v = v * 10 + Int(d)
        }
        return v
    }

    /// `YYYY-MM-DD` as days since 2000-01-01 (date_recv's int32).
    static func appendDate(_ text: UnsafeRawBufferPointer, _ out: inout TupleWriter) -> Bool {
        guard text.count == 10, let days = civilDays(text) else { return false }
        out.integer(Int32(4))
        out.integer(Int32(days - daysFromCivil(2000, 1, 1)))
        return true
    }

    /// The date at the start of `text` (`YYYY-MM-DD`) as days since 1970-01-01, or nil.
    @inline(__always)
    static func civilDays(_ text: UnsafeRawBufferPointer) -> Int? {
        guard text[4] == UInt8(ascii: "-"), text[7] == UInt8(ascii: "-") else { return nil }
        let year = number(text, 0, 4)
        let month = number(text, 5, 2)
        let day = number(text, 8, 2)
        guard year >= 1, (1...12).contains(month), day >= 1, day <= daysIn(month, year) else { return nil }
        return daysFromCivil(year, month, day)
    }

    /// `YYYY-MM-DDThh:mm:ss[.f{1,6}]`, then `Z` when `zoned` (timestamptz) and nothing else
    /// otherwise (timestamp), as microseconds since 2000-01-01 00:00 (timestamp_recv's int64).
    static func appendTimestamp(_ text: UnsafeRawBufferPointer, zoned: Bool, _ out: inout TupleWriter) -> Bool {
        let end = zoned ? text.count - 1 : text.count
        guard end >= 19, end <= 26, !zoned || text[end] == UInt8(ascii: "Z") else { return false }
        guard text[10] == UInt8(ascii: "T"), text[13] == UInt8(ascii: ":"), text[16] == UInt8(ascii: ":"),
            let days = civilDays(text)
        else { return false }
        let hour = number(text, 11, 2)
        let minute = number(text, 14, 2)
        let second = number(text, 17, 2)
        guard hour >= 0, hour < 24, minute >= 0, minute < 60, second >= 0, second < 60 else { return false }
        var micros = 0
        if end > 19 {
            let fraction = end - 20
            guard text[19] == UInt8(ascii: "."), fraction >= 1 else { return false }
            micros = number(text, 20, fraction)
            guard micros >= 0 else { return false }
            for _ in fraction..<6 { micros *= 10 }
        }
        let seconds = Int64(days - daysFromCivil(2000, 1, 1)) * 86_400 + Int64(hour * 3600 + minute * 60 + second)
        out.integer(Int32(8))
        out.integer(seconds * 1_000_000 + Int64(micros))
        return true
    }

    static func daysIn(_ month: Int, _ year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}
