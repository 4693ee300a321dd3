import Posix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A UTC instant with millisecond precision, as milliseconds since 1970-01-01T00:00:00Z.
///
/// Formatting is arithmetic on days (Howard Hinnant's civil-from-days), not `DateFormatter`,
/// because `validate` formats one per row.
public struct UTCTimestamp: Comparable, Hashable, Sendable {
    public var millisecondsSinceEpoch: Int64

    public init(millisecondsSinceEpoch: Int64) {
        self.millisecondsSinceEpoch = millisecondsSinceEpoch
    }

    /// The current time from the system clock.
    public static func now() -> UTCTimestamp {
        UTCTimestamp(millisecondsSinceEpoch: wallClockMilliseconds())
    }

    public static func < (a: UTCTimestamp, b: UTCTimestamp) -> Bool {
        a.millisecondsSinceEpoch < b.millisecondsSinceEpoch
    }

    /// Days since 1970-01-01 for a proleptic Gregorian date.
    public static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    /// (year, month, day) for days since 1970-01-01.
    public static func civilFromDays(_ z0: Int) -> (year: Int, month: Int, day: Int) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// Year, month, day, second of the day and millisecond (days before 1970 included).
    @inline(__always)
    private var civilParts: (year: Int, month: Int, day: Int, second: Int, millisecond: Int) {
        var ms = millisecondsSinceEpoch
        var days = Int(ms / 86_400_000)
        ms %= 86_400_000
        if ms < 0 {
            ms += 86_400_000
            days -= 1
        }
        let (y, mo, d) = UTCTimestamp.civilFromDays(days)
        return (y, mo, d, Int(ms / 1000), Int(ms % 1000))
    }

    /// Appends `YYYY-MM-DDTHH:MM:SS.mmmZ` (RFC 3339, UTC, milliseconds).
    public func appendRFC3339(to out: inout [UInt8], separator: UInt8 = UInt8(ascii: "T"), zulu: Bool = true) {
        let (y, mo, d, secs, milli) = civilParts
        @inline(__always) func two(_ v: Int) {
            out.append(UInt8(0x30 + v / 10))
            out.append(UInt8(0x30 + v % 10))
        }
        if y < 0 || y > 9999 {
            JSONWriter.appendInt(y, &out)
        } else {
            two(y / 100)
            two(y % 100)
        }
        out.append(UInt8(ascii: "-"))
        two(mo)
        out.append(UInt8(ascii: "-"))
        two(d)
        out.append(separator)
        two(secs / 3600)
        out.append(UInt8(ascii: ":"))
        two(secs / 60 % 60)
        out.append(UInt8(ascii: ":"))
        two(secs % 60)
        out.append(UInt8(ascii: "."))
        out.append(UInt8(0x30 + milli / 100))
        two(milli % 100)
        if zulu { out.append(UInt8(ascii: "Z")) }
    }

    /// `2024-01-30T10:15:23.123Z`
    public var rfc3339: String {
        var out: [UInt8] = []
        out.reserveCapacity(24)
        appendRFC3339(to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}

extension UTCTimestamp {
    /// `20240130_101523`, for file names that sort in time order.
    public var compactStamp: String {
        var out: [UInt8] = []
        appendRFC3339(to: &out)
        let digits = out.prefix(19).filter { $0 >= 0x30 && $0 <= 0x39 }
        return String(decoding: digits.prefix(8), as: UTF8.self) + "_" + String(decoding: digits.dropFirst(8), as: UTF8.self)
    }
}
