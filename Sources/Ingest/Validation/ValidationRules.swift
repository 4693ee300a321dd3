/// The settings of the validation contract (docs/validation.md).
public struct ValidationRules: Sendable {
    /// Accepted `event_type` values, lowercase, in the order the reason lists them.
    public private(set) var eventTypes: [String]
    /// How far past the clock an `event_timestamp` may be, in milliseconds.
    public var maxFutureMilliseconds: Int64
    /// Event ids remembered per source file for duplicate detection; beyond it the database
    /// primary key still rejects duplicates, only the reason comes later. 250,000 (≈ 5 MB)
    /// rather than the earlier 500,000 (≈ 10 MB even in a compact table): keeps `validate`
    /// near 20 MB of peak RSS, inside the 25 MB per stage budget (issue 12), on any file.
    public var maxIDsPerFile: Int
    /// Event ids remembered for records without file provenance (a sliding window).
    public var recentIDWindow: Int

    public static let defaultEventTypes = ["view", "purchase"]

    public init(
        eventTypes: [String] = ValidationRules.defaultEventTypes, maxFutureMilliseconds: Int64 = 5 * 60_000,
        maxIDsPerFile: Int = 250_000, recentIDWindow: Int = 100_000
    ) {
        var seen = Set<String>()
        self.eventTypes = eventTypes.map { $0.lowercased() }.filter { !$0.isEmpty && seen.insert($0).inserted }
        self.maxFutureMilliseconds = maxFutureMilliseconds
        self.maxIDsPerFile = maxIDsPerFile
        self.recentIDWindow = recentIDWindow
    }
}

/// The stable reason texts of the contract. Tests pin them; change them only with the docs.
public enum ValidationReason {
    public static let required = "required"
    public static let notUUID = "not a UUID"
    public static let notInteger = "not an integer"
    public static let idOutOfRange = "out of range 1…2147483647"
    public static let requiredForPurchase = "required for a purchase"
    public static let notDecimal = "not a decimal"
    public static let notPositive = "must be > 0"
    public static let tooManyPlaces = "more than two decimal places"
    public static let tooLarge = "must be < 1000000"
    public static let notDateTime = "not a date-time"
    public static let noSuchDate = "no such date"
    public static let misplacedLeapSecond = "leap second not at 23:59:60 UTC"
    public static let yearOutOfRange = "year out of range 0001…9999"
    public static let duplicate = "duplicate event_id"

    /// `unknown event type (expected view, purchase)`
    public static func unknownEventType(_ types: [String]) -> String {
        "unknown event type (expected \(types.joined(separator: ", ")))"
    }

    /// `must be empty for a view`, `must be empty for an add_to_cart`
    public static func mustBeEmpty(for type: String) -> String {
        let article = type.first.map { "aeiou".contains($0) } == true ? "an" : "a"
        return "must be empty for \(article) \(type)"
    }

    /// `more than 5 minutes in the future`
    public static func inFuture(_ milliseconds: Int64) -> String {
        "more than \(describeDuration(milliseconds)) in the future"
    }
}

/// `5 minutes`, `1 hour`, `30 seconds`, `1500 milliseconds`: the largest whole unit.
public func describeDuration(_ milliseconds: Int64) -> String {
    func plural(_ n: Int64, _ unit: String) -> String { "\(n) \(unit)\(n == 1 ? "" : "s")" }
    if milliseconds > 0 && milliseconds % 3_600_000 == 0 { return plural(milliseconds / 3_600_000, "hour") }
    if milliseconds > 0 && milliseconds % 60_000 == 0 { return plural(milliseconds / 60_000, "minute") }
    if milliseconds % 1000 == 0 { return plural(milliseconds / 1000, "second") }
    return plural(milliseconds, "millisecond")
}
