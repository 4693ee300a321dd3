import ArgumentParser
import Ingest

/// A length of time on the command line, in the one syntax every tool and bin/ script accepts:
/// a decimal number and a unit, `250ms`, `1.5s`, `5m`, `1h`; a bare number means seconds.
///
/// bin/lib/common.sh's `duration_ms` reads the same grammar, so `bin/run --for 1.5s` and
/// `gen --interval 1.5s` mean the same thing.
public struct DurationArgument: ExpressibleByArgument, Sendable, Hashable, CustomStringConvertible {
    /// Whole milliseconds (a finer value is rounded to the nearest one).
    public let milliseconds: Int64

    public init(milliseconds: Int64) {
        self.milliseconds = milliseconds
    }

    /// The grammar, for help texts and error messages.
    public static let syntax = "a number and a unit: 250ms, 1.5s, 5m, 1h (a bare number is seconds)"

    public init?(argument: String) {
        guard let milliseconds = Self.parseMilliseconds(argument) else { return nil }
        self.milliseconds = milliseconds
    }

    public var seconds: Double { Double(milliseconds) / 1000 }

    /// The shortest spelling in the largest whole unit: `1h`, `5m`, `1.5s`, `250ms`.
    public var description: String {
        let units: [(Int64, String)] = [(3_600_000, "h"), (60_000, "m"), (1000, "s")]
        for (scale, unit) in units where milliseconds != 0 && milliseconds % scale == 0 {
            return "\(milliseconds / scale)\(unit)"
        }
        if milliseconds == 0 { return "0s" }
        if milliseconds >= 1000 {
            var fraction = String(milliseconds % 1000)
            fraction = String(repeating: "0", count: 3 - fraction.count) + fraction
            while fraction.hasSuffix("0") { fraction.removeLast() }
            return "\(milliseconds / 1000).\(fraction)s"
        }
        return "\(milliseconds)ms"
    }

    public var defaultValueDescription: String { description }

    /// `DIGITS[.DIGITS][ms|s|m|h]`, nothing else: no sign, exponent, spaces or `inf`.
    static func parseMilliseconds(_ text: String) -> Int64? { parseDurationMilliseconds(text) }
}
