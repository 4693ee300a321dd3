/// A date-time read from text, before it becomes an instant: fields as written, and the offset
/// when the text had one.
struct CivilDateTime {
    var year = 0, month = 1, day = 1, hour = 0, minute = 0, second = 0
    var microsecond = 0
    /// Seconds east of UTC, when written.
    var offsetSeconds: Int?
}

/// What reading a date or timestamp gave; the failures are reasons.
enum TemporalParse {
    case value(CivilDateTime)
    /// Microseconds since 1970-01-01 UTC, read as a number (epoch formats).
    case epochMicroseconds(Int64)
    case malformed
    case noSuchDate
}

enum TemporalReason {
    static let notDateTime = "not a date-time"
    static let notDate = "not a date"
    static let noSuchDate = "no such date"
    static let misplacedLeapSecond = "leap second not at 23:59:60 UTC"
    static let yearOutOfRange = "year out of range 0001…9999"
}

/// Reading dates and timestamps in the formats a contract names, without Foundation.
enum TemporalText {
    /// `YYYY-MM-DD[(T|t| )hh:mm[:ss[.f…]]][Z|z|±hh[:mm]|±hhmm]`; a date alone when `date`.
    static func parseISO(_ p: UnsafeRawBufferPointer, date: Bool) -> TemporalParse {
        let n = p.count
        var c = CivilDateTime()
        var i = 0
        @inline(__always) func digits(_ count: Int) -> Int? {
            guard i + count <= n else { return nil }
            var v = 0
            for k in i..<(i + count) {
                let d = Int(p[k]) &- 0x30
                guard d >= 0 && d <= 9 else { return nil }
                v = v * 10 + d
            }
            i += count
            return v
        }
        @inline(__always) func expect(_ b: UInt8) -> Bool {
            guard i < n, p[i] == b else { return false }
            i += 1
            return true
        }
        guard let y = digits(4), expect(UInt8(ascii: "-")), let mo = digits(2), expect(UInt8(ascii: "-")), let d = digits(2) else {
            return .malformed
        }
        (c.year, c.month, c.day) = (y, mo, d)
        if date {
            guard i == n else { return .malformed }
        } else {
            guard i < n, p[i] == UInt8(ascii: "T") || p[i] == UInt8(ascii: "t") || p[i] == UInt8(ascii: " ") else { return .malformed }
            i += 1
            guard let h = digits(2), expect(UInt8(ascii: ":")), let mi = digits(2) else { return .malformed }
            (c.hour, c.minute) = (h, mi)
            if expect(UInt8(ascii: ":")) {
                guard let s = digits(2) else { return .malformed }
                c.second = s
                if expect(UInt8(ascii: ".")) {
                    guard let f = fraction(p, &i) else { return .malformed }
                    c.microsecond = f
                }
            }
            if i < n {
                guard let offset = zone(p, &i), i == n else { return .malformed }
                c.offsetSeconds = offset
            }
            guard c.hour < 24, c.minute < 60, c.second <= 60 else { return .malformed }
        }
        guard c.month >= 1 && c.month <= 12 && c.day >= 1 && c.day <= 31 else { return .malformed }
        guard c.day <= UTCTimestamp.daysInMonth(year: c.year, month: c.month) else { return .noSuchDate }
        return .value(c)
    }

    /// One or more fraction digits at `i`, as microseconds (digits past six are truncated).
    static func fraction(_ p: UnsafeRawBufferPointer, _ i: inout Int) -> Int? {
        var micros = 0
        var count = 0
        while i < p.count, p[i] >= 0x30 && p[i] <= 0x39 {
            if count < 6 { micros = micros * 10 + Int(p[i] - 0x30) }
            count += 1
            i += 1
        }
        guard count > 0 else { return nil }
        for _ in count..<max(count, 6) { micros *= 10 }
        return micros
    }

    /// `Z`, `z`, `±hh`, `±hh:mm`, `±hhmm` at `i`, as seconds east of UTC.
    static func zone(_ p: UnsafeRawBufferPointer, _ i: inout Int) -> Int? {
        guard i < p.count else { return nil }
        if p[i] == UInt8(ascii: "Z") || p[i] == UInt8(ascii: "z") {
            i += 1
            return 0
        }
        guard p[i] == UInt8(ascii: "+") || p[i] == UInt8(ascii: "-") else { return nil }
        let negative = p[i] == UInt8(ascii: "-")
        i += 1
        func two() -> Int? {
            guard i + 2 <= p.count, p[i] >= 0x30 && p[i] <= 0x39, p[i + 1] >= 0x30 && p[i + 1] <= 0x39 else { return nil }
            defer { i += 2 }
            return Int(p[i] - 0x30) * 10 + Int(p[i + 1] - 0x30)
        }
        guard let h = two(), h <= 23 else { return nil }
        var m = 0
        if i < p.count && p[i] == UInt8(ascii: ":") { i += 1 }
        if i < p.count {
            guard let mm = two(), mm < 60 else { return nil }
            m = mm
        }
        let s = h * 3600 + m * 60
        return negative ? -s : s
    }

    /// An integer (or for seconds a decimal) count since the epoch, as microseconds.
    static func parseEpoch(_ p: UnsafeRawBufferPointer, milliseconds: Bool) -> TemporalParse {
        var i = 0
        let negative = p.count > 0 && p[0] == UInt8(ascii: "-")
        if negative { i = 1 }
        var whole: Int64 = 0
        var count = 0
        while i < p.count, p[i] >= 0x30 && p[i] <= 0x39 {
            guard count < 15 else { return .malformed }
            whole = whole * 10 + Int64(p[i] - 0x30)
            count += 1
            i += 1
        }
        guard count > 0 else { return .malformed }
        var micros = whole * (milliseconds ? 1000 : 1_000_000)
        if !milliseconds && i < p.count && p[i] == UInt8(ascii: ".") {
            i += 1
            guard let f = fraction(p, &i) else { return .malformed }
            micros += Int64(f)
        }
        guard i == p.count else { return .malformed }
        return .epochMicroseconds(negative ? -micros : micros)
    }

    /// Reads `p` by a pattern of `%Y %m %d %H %M %S %f %z %%` and literals.
    static func parsePattern(_ pattern: [UInt8], _ p: UnsafeRawBufferPointer) -> TemporalParse {
        var c = CivilDateTime()
        var i = 0
        var k = 0
        func number(_ minDigits: Int, _ maxDigits: Int) -> Int? {
            var v = 0
            var count = 0
            while count < maxDigits, i < p.count, p[i] >= 0x30 && p[i] <= 0x39 {
                v = v * 10 + Int(p[i] - 0x30)
                count += 1
                i += 1
            }
            return count >= minDigits ? v : nil
        }
        while k < pattern.count {
            let ch = pattern[k]
            if ch == UInt8(ascii: "%") && k + 1 < pattern.count {
                k += 2
                switch pattern[k - 1] {
                case UInt8(ascii: "Y"): guard let v = number(4, 4) else { return .malformed }; c.year = v
                case UInt8(ascii: "m"): guard let v = number(1, 2) else { return .malformed }; c.month = v
                case UInt8(ascii: "d"): guard let v = number(1, 2) else { return .malformed }; c.day = v
                case UInt8(ascii: "H"): guard let v = number(1, 2) else { return .malformed }; c.hour = v
                case UInt8(ascii: "M"): guard let v = number(2, 2) else { return .malformed }; c.minute = v
                case UInt8(ascii: "S"): guard let v = number(2, 2) else { return .malformed }; c.second = v
                case UInt8(ascii: "f"): guard let v = fraction(p, &i) else { return .malformed }; c.microsecond = v
                case UInt8(ascii: "z"): guard let v = zone(p, &i) else { return .malformed }; c.offsetSeconds = v
                default: guard i < p.count, p[i] == UInt8(ascii: "%") else { return .malformed }; i += 1
                }
            } else {
                guard i < p.count, p[i] == ch else { return .malformed }
                i += 1
                k += 1
            }
        }
        guard i == p.count, c.month >= 1 && c.month <= 12, c.day >= 1 && c.day <= 31, c.hour < 24, c.minute < 60, c.second <= 60
        else { return .malformed }
        guard c.day <= UTCTimestamp.daysInMonth(year: c.year, month: c.month) else { return .noSuchDate }
        return .value(c)
    }
}

/// A contract's temporal `format` pattern, checked when the contract is read.
enum TemporalPattern {
    static func problem(_ pattern: String, date: Bool) -> String? {
        let bytes = Array(pattern.utf8)
        var k = 0
        var seen = Set<UInt8>()
        while k < bytes.count {
            if bytes[k] == UInt8(ascii: "%") {
                guard k + 1 < bytes.count else { return "ends with a lone %" }
                let d = bytes[k + 1]
                guard "YmdHMSfz%".utf8.contains(d) else {
                    return "unknown directive %\(Character(Unicode.Scalar(d))) (supported: %Y %m %d %H %M %S %f %z %%)"
                }
                seen.insert(d)
                k += 2
            } else {
                k += 1
            }
        }
        for needed in "Ymd".utf8 where !seen.contains(needed) {
            return "needs %Y, %m and %d"
        }
        if !date && !seen.contains(UInt8(ascii: "H")) { return "needs at least %H for a timestamp" }
        return nil
    }
}
