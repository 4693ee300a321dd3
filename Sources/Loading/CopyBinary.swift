import Ingest

/// Writes records as tuples of PostgreSQL's binary COPY format, built once when a record
/// arrives.
///
/// Binary, not text: the server parses no uuid, integer, numeric or timestamp text, which made
/// its side of COPY ~1.36× faster on this table. Only values in the canonical form `validate`
/// writes are converted here; for anything else `appendRow` returns false and the batch goes
/// through the text path (`CopyText`), where the server judges each row and a refused row is
/// reported with the server's own message.
enum CopyBinary {
    /// `PGCOPY\n\377\r\n\0`, flags 0, no header extension.
    static let header: [UInt8] = Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00] + [0, 0, 0, 0] + [0, 0, 0, 0]
    /// A field count of -1 ends the data.
    static let trailer: [UInt8] = [0xFF, 0xFF]

    /// Appends the tuple for the record in `line` (columns in `CopyText.columns` order); false,
    /// with `out` unchanged, when a value is not in canonical form.
    static func appendRow(from line: ProtocolLine, into out: inout [UInt8]) -> Bool {
        let mark = out.count
        appendInt16(Int16(EventField.allCases.count), &out)
        for field in EventField.allCases {
            guard let m = line.member(ProtocolKey(field)), m.kind != .null else {
                appendInt32(-1, &out)
                continue
            }
            let ok: Bool
            switch (field, m.kind) {
            case (.eventID, .string): ok = line.withStringBytes(m) { appendUUID($0, &out) }
            case (.userID, .number), (.productID, .number): ok = appendInt4(line.span(m), &out)
            case (.eventType, .string):
                ok = line.withStringBytes(m) { text in
                    // Text bytes as they are; NUL cannot be stored, so leave it to the text path.
                    guard !text.contains(0) else { return false }
                    appendInt32(Int32(text.count), &out)
                    out.append(contentsOf: text)
                    return true
                }
            case (.price, .string): ok = line.withStringBytes(m) { appendNumeric($0, &out) }
            case (.price, .number): ok = appendNumeric(line.span(m), &out)
            case (.eventTimestamp, .string): ok = line.withStringBytes(m) { appendTimestamp($0, &out) }
            default: ok = false
            }
            if !ok {
                out.removeSubrange(mark...)
                return false
            }
        }
        return true
    }

    @inline(__always)
    static func appendInt16(_ v: Int16, _ out: inout [UInt8]) {
        let u = UInt16(bitPattern: v)
        out.append(UInt8(u >> 8))
        out.append(UInt8(u & 0xFF))
    }

    @inline(__always)
    static func appendInt32(_ v: Int32, _ out: inout [UInt8]) {
        let u = UInt32(bitPattern: v)
        out.append(UInt8(u >> 24))
        out.append(UInt8((u >> 16) & 0xFF))
        out.append(UInt8((u >> 8) & 0xFF))
        out.append(UInt8(u & 0xFF))
    }

    @inline(__always)
    static func appendInt64(_ v: Int64, _ out: inout [UInt8]) {
        appendInt32(Int32(truncatingIfNeeded: v >> 32), &out)
        appendInt32(Int32(truncatingIfNeeded: v), &out)
    }

    /// 8-4-4-4-12 hex digits (either case) as 16 bytes.
    static func appendUUID(_ text: UnsafeRawBufferPointer, _ out: inout [UInt8]) -> Bool {
        guard text.count == 36 else { return false }
        var bytes: (UInt64, UInt64) = (0, 0)
        var nibbles = 0
        for (i, c) in text.enumerated() {
            if i == 8 || i == 13 || i == 18 || i == 23 {
                guard c == UInt8(ascii: "-") else { return false }
                continue
            }
            let v: UInt64
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt64(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = UInt64(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): v = UInt64(c - UInt8(ascii: "A") + 10)
            default: return false
            }
            if nibbles < 16 { bytes.0 = bytes.0 << 4 | v } else { bytes.1 = bytes.1 << 4 | v }
            nibbles += 1
        }
        appendInt32(16, &out)
        appendInt64(Int64(bitPattern: bytes.0), &out)
        appendInt64(Int64(bitPattern: bytes.1), &out)
        return true
    }

    /// A JSON integer that fits int4.
    static func appendInt4(_ text: UnsafeRawBufferPointer, _ out: inout [UInt8]) -> Bool {
        guard let value = parseInteger(text), let v = Int32(exactly: value) else { return false }
        appendInt32(4, &out)
        appendInt32(v, &out)
        return true
    }

    static func parseInteger(_ text: UnsafeRawBufferPointer) -> Int64? {
        guard !text.isEmpty, text.count <= 19 else { return nil }
        var negative = false
        var value: Int64 = 0
        var digits = 0
        for (i, c) in text.enumerated() {
            if i == 0 && c == UInt8(ascii: "-") {
                negative = true
                continue
            }
            guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int64(c - UInt8(ascii: "0"))
            digits += 1
        }
        guard digits > 0 else { return nil }
        return negative ? -value : value
    }

    /// `-?digits(.digits)?` as a numeric: base-10000 digits, weight, sign and display scale
    /// (the server applies the column's precision and scale, as it does for text).
    static func appendNumeric(_ text: UnsafeRawBufferPointer, _ out: inout [UInt8]) -> Bool {
        var i = 0
        var negative = false
        if i < text.count && text[i] == UInt8(ascii: "-") {
            negative = true
            i += 1
        }
        let intStart = i
        while i < text.count && text[i] >= UInt8(ascii: "0") && text[i] <= UInt8(ascii: "9") { i += 1 }
        let intEnd = i
        var fracStart = i
        var fracEnd = i
        if i < text.count && text[i] == UInt8(ascii: ".") {
            i += 1
            fracStart = i
            while i < text.count && text[i] >= UInt8(ascii: "0") && text[i] <= UInt8(ascii: "9") { i += 1 }
            fracEnd = i
            guard fracEnd > fracStart else { return false }
        }
        guard i == text.count, intEnd > intStart, intEnd - intStart <= 32, fracEnd - fracStart <= 32 else { return false }
        // Groups of four decimal digits, aligned on the decimal point.
        var groups: [Int16] = []
        groups.reserveCapacity(20)
        let intDigits = intEnd - intStart
        let lead = (4 - intDigits % 4) % 4
        var acc = 0
        var n = 0
        for k in 0..<(lead + intDigits) {
            let d = k < lead ? 0 : Int(text[intStart + k - lead] - UInt8(ascii: "0"))
            acc = acc * 10 + d
            n += 1
            if n == 4 {
                groups.append(Int16(acc))
                acc = 0
                n = 0
            }
        }
        var weight = groups.count - 1
        let fracDigits = fracEnd - fracStart
        for k in 0..<((fracDigits + 3) / 4 * 4) {
            let d = k < fracDigits ? Int(text[fracStart + k] - UInt8(ascii: "0")) : 0
            acc = acc * 10 + d
            n += 1
            if n == 4 {
                groups.append(Int16(acc))
                acc = 0
                n = 0
            }
        }
        var first = 0
        while first < groups.count && groups[first] == 0 {
            first += 1
            weight -= 1
        }
        var last = groups.count
        while last > first && groups[last - 1] == 0 { last -= 1 }
        let digits = groups[first..<last]
        if digits.isEmpty {
            weight = 0
            negative = false
        }
        appendInt32(Int32(8 + 2 * digits.count), &out)
        appendInt16(Int16(digits.count), &out)
        appendInt16(Int16(weight), &out)
        appendInt16(negative ? 0x4000 : 0, &out)
        appendInt16(Int16(fracDigits), &out)
        for g in digits { appendInt16(g, &out) }
        return true
    }

    /// `YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z` as microseconds since 2000-01-01 00:00 UTC.
    static func appendTimestamp(_ text: UnsafeRawBufferPointer, _ out: inout [UInt8]) -> Bool {
        guard text.count >= 20, text.count <= 27, text[text.count - 1] == UInt8(ascii: "Z") else { return false }
        func number(_ at: Int, _ width: Int) -> Int? {
            var v = 0
            for k in at..<(at + width) {
                let c = text[k]
                guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") else { return nil }
                v = v * 10 + Int(c - UInt8(ascii: "0"))
            }
            return v
        }
        guard text[4] == UInt8(ascii: "-"), text[7] == UInt8(ascii: "-"), text[10] == UInt8(ascii: "T"),
            text[13] == UInt8(ascii: ":"), text[16] == UInt8(ascii: ":"),
            let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
            let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2),
            year >= 1, (1...12).contains(month), (1...daysIn(month, year)).contains(day),
            hour < 24, minute < 60, second < 60
        else { return false }
        var micros = 0
        if text.count > 20 {
            let fraction = text.count - 21
            guard text[19] == UInt8(ascii: "."), fraction >= 1, let f = number(20, fraction) else { return false }
            micros = f
            for _ in fraction..<6 { micros *= 10 }
        } else {
            guard text[19] == UInt8(ascii: "Z") else { return false }
        }
        let days = daysFromCivil(year, month, day) - daysFromCivil(2000, 1, 1)
        let seconds = Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + second)
        appendInt32(8, &out)
        appendInt64(seconds * 1_000_000 + Int64(micros), &out)
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
