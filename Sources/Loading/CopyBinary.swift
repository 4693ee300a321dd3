import Ingest

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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

    /// An upper bound on the size of `line`'s tuple: no field's binary form is more than 128
    /// bytes longer than its JSON text (ints and the numeric's header are the only growth).
    static func maxTupleSize(_ line: ProtocolLine) -> Int { line.bytes.count + 128 }

    /// Stores the tuple for the record in `line` (columns in `CopyText.columns` order) at `base`,
    /// which has room for `maxTupleSize(line)` bytes; nil when a value is not in canonical form.
    ///
    /// Into raw memory, not an `[UInt8]`: per-byte `Array.append` (a capacity and uniqueness
    /// check each) was ~10 % of load's instructions per row.
    static func writeRow(from line: ProtocolLine, to base: UnsafeMutableRawPointer) -> Int? {
        var out = TupleWriter(base: base)
        out.integer(Int16(EventField.allCases.count))
        for field in EventField.allCases {
            guard let m = line.member(ProtocolKey(field)), m.kind != .null else {
                out.integer(Int32(-1))
                continue
            }
            let ok: Bool
            switch (field, m.kind) {
            case (.eventID, .string): ok = line.withStringBytes(m) { appendUUID($0, &out) }
            case (.userID, .number), (.productID, .number): ok = appendInt4(line.span(m), &out)
            case (.eventType, .string):
                ok = line.withStringBytes(m) { text in
                    // Text bytes as they are; NUL cannot be stored, so leave it to the text path.
                    guard text.isEmpty || memchr(text.baseAddress!, 0, text.count) == nil else { return false }
                    out.integer(Int32(text.count))
                    out.bytes(text)
                    return true
                }
            case (.price, .string): ok = line.withStringBytes(m) { appendNumeric($0, &out) }
            case (.price, .number): ok = appendNumeric(line.span(m), &out)
            case (.eventTimestamp, .string): ok = line.withStringBytes(m) { appendTimestamp($0, &out) }
            default: ok = false
            }
            if !ok { return nil }
        }
        return out.count
    }

    /// Appends the tuple for the record in `line`; false, with `out` unchanged, when a value is
    /// not in canonical form.
    static func appendRow(from line: ProtocolLine, into out: inout [UInt8]) -> Bool {
        let room = maxTupleSize(line)
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: room, alignment: 8)
        defer { scratch.deallocate() }
        guard let count = writeRow(from: line, to: scratch) else { return false }
        out.append(contentsOf: UnsafeRawBufferPointer(start: scratch, count: count))
        return true
    }

    /// Big-endian values stored one after another at a pointer with room for them.
    struct TupleWriter {
        let base: UnsafeMutableRawPointer
        private(set) var count = 0

        init(base: UnsafeMutableRawPointer) { self.base = base }

        /// A big-endian integer of its own width (int16, int32, int64 in the format).
        @inline(__always)
        mutating func integer<T: FixedWidthInteger>(_ v: T) {
            base.storeBytes(of: v.bigEndian, toByteOffset: count, as: T.self)
            count += MemoryLayout<T>.size
        }

        @inline(__always)
        mutating func bytes(_ b: UnsafeRawBufferPointer) {
            if let from = b.baseAddress { (base + count).copyMemory(from: from, byteCount: b.count) }
            count += b.count
        }
    }

    /// `count` hex digits (either case) from `p`, and whether one was not a hex digit.
    @inline(__always)
    static func hexDigits(_ p: UnsafePointer<UInt8>, _ count: Int, into value: inout UInt64, bad: inout Bool) {
        for k in 0..<count {
            let c = p[k]
            let digit = c &- UInt8(ascii: "0")
            let letter = (c | 0x20) &- UInt8(ascii: "a")
            bad = bad || (digit >= 10 && letter >= 6)
            value = value << 4 | UInt64(digit < 10 ? digit : letter &+ 10)
        }
    }

    /// 8-4-4-4-12 hex digits (either case) as 16 bytes.
    static func appendUUID(_ text: UnsafeRawBufferPointer, _ out: inout TupleWriter) -> Bool {
        guard text.count == 36, let p = text.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return false }
        guard p[8] == UInt8(ascii: "-"), p[13] == UInt8(ascii: "-"), p[18] == UInt8(ascii: "-"), p[23] == UInt8(ascii: "-")
        else { return false }
        // Group by group, without a branch per digit (this was ~8 % of load's time per row).
        var high: UInt64 = 0
        var low: UInt64 = 0
        var bad = false
        hexDigits(p, 8, into: &high, bad: &bad)
        hexDigits(p + 9, 4, into: &high, bad: &bad)
        hexDigits(p + 14, 4, into: &high, bad: &bad)
        hexDigits(p + 19, 4, into: &low, bad: &bad)
        hexDigits(p + 24, 12, into: &low, bad: &bad)
        guard !bad else { return false }
        out.integer(Int32(16))
        out.integer(Int64(bitPattern: high))
        out.integer(Int64(bitPattern: low))
        return true
    }

    /// A JSON integer that fits int4.
    static func appendInt4(_ text: UnsafeRawBufferPointer, _ out: inout TupleWriter) -> Bool {
        guard let value = parseInteger(text), let v = Int32(exactly: value) else { return false }
        out.integer(Int32(4))
        out.integer(v)
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
    static func appendNumeric(_ text: UnsafeRawBufferPointer, _ out: inout TupleWriter) -> Bool {
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
        // Groups of four decimal digits, aligned on the decimal point (at most 8 + 8: on the
        // stack, not in an array allocated per row).
        return withUnsafeTemporaryAllocation(of: Int16.self, capacity: 20) { groups in
            var count = 0
            let intDigits = intEnd - intStart
            let lead = (4 - intDigits % 4) % 4
            var acc = 0
            var n = 0
            /// One more decimal digit; every fourth closes a group.
            func push(_ digit: Int) {
                acc = acc * 10 + digit
                n += 1
                if n == 4 {
                    groups[count] = Int16(acc)
                    count += 1
                    acc = 0
                    n = 0
                }
            }
            for k in 0..<(lead + intDigits) { push(k < lead ? 0 : Int(text[intStart + k - lead] - UInt8(ascii: "0"))) }
            var weight = count - 1
            let fracDigits = fracEnd - fracStart
            for k in 0..<((fracDigits + 3) / 4 * 4) { push(k < fracDigits ? Int(text[fracStart + k] - UInt8(ascii: "0")) : 0) }
            var first = 0
            while first < count && groups[first] == 0 {
                first += 1
                weight -= 1
            }
            var last = count
            while last > first && groups[last - 1] == 0 { last -= 1 }
            let digits = last - first
            if digits == 0 {
                weight = 0
                negative = false
            }
            out.integer(Int32(8 + 2 * digits))
            out.integer(Int16(digits))
            out.integer(Int16(weight))
            out.integer(Int16(negative ? 0x4000 : 0))
            out.integer(Int16(fracDigits))
            for g in first..<last { out.integer(groups[g]) }
            return true
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z` as microseconds since 2000-01-01 00:00 UTC.
    static func appendTimestamp(_ text: UnsafeRawBufferPointer, _ out: inout TupleWriter) -> Bool {
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
