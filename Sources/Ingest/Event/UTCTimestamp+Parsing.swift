/// What reading an `event_timestamp` gave.
public enum TimestampParse: Equatable, Sendable {
    case instant(UTCTimestamp)
    /// Not the shape `YYYY-MM-DD[T ]hh:mm:ss[.fff…][Z|±hh:mm|±hhmm]`, or a time field out of range.
    case notDateTime
    /// Well formed, but the calendar has no such day (Feb 30, month 13).
    case noSuchDate
    /// `:60` anywhere but 23:59:60 UTC.
    case misplacedLeapSecond
    /// Outside 0001-01-01T00:00:00Z … 9999-12-31T23:59:59.999Z once converted to UTC.
    case yearOutOfRange
}

extension UTCTimestamp {
    /// 0001-01-01T00:00:00Z and 10000-01-01T00:00:00Z, in ms since the epoch.
    static let earliestMilliseconds = Int64(UTCTimestamp.daysFromCivil(year: 1, month: 1, day: 1)) * 86_400_000
    static let pastLatestMilliseconds = Int64(UTCTimestamp.daysFromCivil(year: 10000, month: 1, day: 1)) * 86_400_000

    /// Parses an RFC 3339 / ISO 8601 date-time from bytes, without Foundation.
    ///
    /// Accepts `T`, `t` or a space between date and time; any number of fractional digits
    /// (truncated to milliseconds); `Z`, `z`, `±hh:mm` or `±hhmm`, or no offset meaning UTC.
    /// A leap second `23:59:60` (UTC) becomes `23:59:59.999`, which keeps it inside its day and
    /// in order. `validate` calls this once per row, so it only does integer arithmetic.
    public static func parse(_ text: UnsafeRawBufferPointer) -> TimestampParse {
        let p = text.bindMemory(to: UInt8.self)
        let n = p.count
        guard n >= 19 else { return .notDateTime }
        @inline(__always) func digit(_ i: Int) -> Int {
            let d = Int(p[i]) &- 0x30
            return d >= 0 && d <= 9 ? d : -1
        }
        @inline(__always) func number(_ i: Int, _ count: Int) -> Int {
            var v = 0
            for k in i..<(i + count) {
                let d = digit(k)
                if d < 0 { return -1 }
                v = v * 10 + d
            }
            return v
        }
        let year = number(0, 4)
        let month = number(5, 2)
        let day = number(8, 2)
        let hour = number(11, 2)
        let minute = number(14, 2)
        let second = number(17, 2)
        let sep = p[10]
        guard year >= 0, month >= 0, day >= 0, hour >= 0, minute >= 0, second >= 0,
            p[4] == UInt8(ascii: "-"), p[7] == UInt8(ascii: "-"),
            sep == UInt8(ascii: "T") || sep == UInt8(ascii: "t") || sep == UInt8(ascii: " "),
            p[13] == UInt8(ascii: ":"), p[16] == UInt8(ascii: ":")
        else { return .notDateTime }

        var i = 19
        var millis = 0
        if i < n && p[i] == UInt8(ascii: ".") {
            i += 1
            let fractionStart = i
            while i < n && digit(i) >= 0 {
                if i - fractionStart < 3 { millis = millis * 10 + digit(i) }
                i += 1
            }
            let count = i - fractionStart
            guard count > 0 else { return .notDateTime }
            if count == 1 { millis *= 100 } else if count == 2 { millis *= 10 }
        }
        var offsetMinutes = 0
        if i < n {
            let c = p[i]
            if c == UInt8(ascii: "Z") || c == UInt8(ascii: "z") {
                i += 1
            } else if c == UInt8(ascii: "+") || c == UInt8(ascii: "-") {
                let sign = c == UInt8(ascii: "-") ? -1 : 1
                i += 1
                var offsetHour = -1
                var offsetMinute = -1
                if n - i == 5 && p[i + 2] == UInt8(ascii: ":") {
                    offsetHour = number(i, 2)
                    offsetMinute = number(i + 3, 2)
                } else if n - i == 4 {
                    offsetHour = number(i, 2)
                    offsetMinute = number(i + 2, 2)
                }
                guard offsetHour >= 0 && offsetHour <= 23 && offsetMinute >= 0 && offsetMinute <= 59 else {
                    return .notDateTime
                }
                offsetMinutes = sign * (offsetHour * 60 + offsetMinute)
                i = n
            } else {
                return .notDateTime
            }
        }
        guard i == n else { return .notDateTime }
        guard hour <= 23, minute <= 59, second <= 60 else { return .notDateTime }
        guard year >= 1 else { return .yearOutOfRange }
        guard month >= 1, month <= 12, day >= 1, day <= daysInMonth(year: year, month: month) else { return .noSuchDate }
        let days = Int64(daysFromCivil(year: year, month: month, day: day))
        let secondOfDay = Int64(hour * 3600 + minute * 60 + min(second, 59))
        var ms = (days * 86_400 + secondOfDay - Int64(offsetMinutes) * 60) * 1000
        if second == 60 {
            // Only 23:59:60 UTC is a leap second; there is no table of which days had one.
            let utcSecondOfDay = ((ms / 1000) % 86_400 + 86_400) % 86_400
            guard utcSecondOfDay == 86_399 else { return .misplacedLeapSecond }
            ms += 999
        } else {
            ms += Int64(millis)
        }
        guard ms >= earliestMilliseconds && ms < pastLatestMilliseconds else { return .yearOutOfRange }
        return .instant(UTCTimestamp(millisecondsSinceEpoch: ms))
    }

    /// Parses a string (tests, command-line options). Nil unless it is a valid instant.
    public init?(parsing text: String) {
        var copy = text
        let result = copy.withUTF8 { UTCTimestamp.parse(UnsafeRawBufferPointer($0)) }
        guard case .instant(let t) = result else { return nil }
        self = t
    }

    /// Days in a month of the proleptic Gregorian calendar.
    public static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}
