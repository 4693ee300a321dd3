/// What `validate` applies: a contract, and how many keys it remembers for duplicates.
public struct ValidationRules: Sendable {
    public var contract: Contract
    /// Keys remembered per source file for duplicate detection; beyond it the database
    /// primary key still rejects duplicates, only the reason comes later. 250,000 (≈ 5 MB)
    /// rather than the earlier 500,000 (≈ 10 MB even in a compact table): keeps `validate`
    /// near 20 MB of peak RSS, inside the 25 MB per stage budget (issue 12), on any file.
    public var maxIDsPerFile: Int
    /// Keys remembered for records without file provenance (a sliding window).
    public var recentIDWindow: Int

    public static let defaultEventTypes = ["view", "purchase"]

    public init(contract: Contract = .ecommerceEvents, maxIDsPerFile: Int = 250_000, recentIDWindow: Int = 100_000) {
        self.contract = contract
        self.maxIDsPerFile = maxIDsPerFile
        self.recentIDWindow = recentIDWindow
    }

    /// The e-commerce contract with `validate`'s two older knobs applied: the accepted
    /// `event_type` values and the `event_timestamp`'s `max_future`.
    public init(
        eventTypes: [String] = ValidationRules.defaultEventTypes, maxFutureMilliseconds: Int64 = 5 * 60_000, maxIDsPerFile: Int = 250_000,
        recentIDWindow: Int = 100_000
    ) {
        var contract = Contract.ecommerceEvents
        contract.override(eventTypes: eventTypes, maxFutureMilliseconds: maxFutureMilliseconds)
        self.init(contract: contract, maxIDsPerFile: maxIDsPerFile, recentIDWindow: recentIDWindow)
    }

    /// Accepted `event_type` values, in the order the reason lists them (empty when the
    /// contract has no such column).
    public var eventTypes: [String] {
        contract.column(named: "event_type").flatMap { contract.columns[$0].rules.acceptedValues } ?? []
    }
}

extension Contract {
    /// Applies `--event-types` (to the `event_type` column's accepted values) and
    /// `--max-future` (to every timestamp column that has a `max_future`).
    public mutating func override(eventTypes: [String]?, maxFutureMilliseconds: Int64?) {
        if let eventTypes, let c = column(named: "event_type") {
            var seen = Set<String>()
            columns[c].rules.acceptedValues = eventTypes.map { $0.lowercased() }.filter { !$0.isEmpty && seen.insert($0).inserted }
        }
        if let maxFutureMilliseconds {
            for i in columns.indices where columns[i].rules.maxFutureMilliseconds != nil {
                columns[i].rules.maxFutureMilliseconds = maxFutureMilliseconds
            }
        }
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
    public static let duplicate = "duplicate event_id (earlier in this file)"

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
        "more than \(describeDuration(milliseconds))" + inFutureSuffix
    }

    /// How every `max_future` reason ends: `StreamValidator` knows by it that a reject may
    /// be owed to its cached clock reading.
    public static let inFutureSuffix = " in the future"
}

/// `5 minutes`, `1 hour`, `30 seconds`, `1500 milliseconds`: the largest whole unit.
public func describeDuration(_ milliseconds: Int64) -> String {
    func plural(_ n: Int64, _ unit: String) -> String { "\(n) \(unit)\(n == 1 ? "" : "s")" }
    if milliseconds > 0 && milliseconds % 3_600_000 == 0 { return plural(milliseconds / 3_600_000, "hour") }
    if milliseconds > 0 && milliseconds % 60_000 == 0 { return plural(milliseconds / 60_000, "minute") }
    if milliseconds % 1000 == 0 { return plural(milliseconds / 1000, "second") }
    return plural(milliseconds, "millisecond")
}
