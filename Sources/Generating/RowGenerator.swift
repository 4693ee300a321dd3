import Ingest

/// The rule an invalid generated row breaks: exactly one each.
public enum InvalidRule: String, CaseIterable, Sendable {
    case eventID = "event_id"
    case userID = "user_id"
    case productID = "product_id"
    case eventType = "event_type"
    case price
    case eventTimestamp = "event_timestamp"
    /// Too few or too many fields on the row.
    case fieldCount = "field_count"
    /// The event_id of an earlier valid row of the same file.
    case duplicateEventID = "duplicate_event_id"

    /// The field the validator's reason names (nil: the whole row).
    public var field: String? {
        switch self {
        case .fieldCount: nil
        case .duplicateEventID: "event_id"
        default: rawValue
        }
    }
}

/// One generated CSV row: its six cells (or another count for `fieldCount`), the rule it
/// breaks (nil when valid) and its event id when valid.
public struct GeneratedRow: Sendable {
    public var cells: [String]
    public var brokenRule: InvalidRule?
    public var eventID: String?

    /// The row as a CSV line without terminator (cells never need quoting).
    public var csvLine: String { cells.joined(separator: ",") }
}

/// Makes realistic event rows, a share of them invalid in one chosen way.
///
/// ~70% views, ~30% purchases priced 1.00–500.00, users 1…100000, products 1…5000,
/// timestamps at `now` (UTC, milliseconds) written with a space or with T and Z.
/// Same seed, same rows (apart from the timestamps, which follow the clock).
public struct RowGenerator {
    public var random: SplitMix64
    public var invalidRate: Double

    public init(seed: UInt64, invalidRate: Double = 0.04) {
        random = SplitMix64(seed: seed)
        self.invalidRate = invalidRate
    }

    /// The rows of one batch file.
    public mutating func batch(rows count: Int, now: UTCTimestamp) -> [GeneratedRow] {
        var rows: [GeneratedRow] = []
        rows.reserveCapacity(count)
        var validIDs: [String] = []
        for _ in 0..<count {
            var row = validRow(now: now)
            if random.unit() < invalidRate {
                var rule = random.pick(InvalidRule.allCases)
                if rule == .duplicateEventID && validIDs.isEmpty {
                    // Nothing earlier to duplicate (first row): break another rule instead.
                    rule = random.pick(InvalidRule.allCases.filter { $0 != .duplicateEventID })
                }
                breakRule(rule, &row, validIDs: validIDs, now: now)
            } else {
                validIDs.append(row.eventID!)
            }
            rows.append(row)
        }
        return rows
    }

    private mutating func validRow(now: UTCTimestamp) -> GeneratedRow {
        let id = random.uuid().text
        let purchase = random.unit() < 0.3
        let price = purchase ? priceText(cents: random.int(in: 100...50_000)) : ""
        let withT = random.int(in: 0...1) == 1
        var stamp: [UInt8] = []
        now.appendRFC3339(to: &stamp, separator: withT ? UInt8(ascii: "T") : UInt8(ascii: " "), zulu: withT)
        return GeneratedRow(
            cells: [
                id, String(random.int(in: 1...100_000)), String(random.int(in: 1...5000)),
                purchase ? "purchase" : "view", price, String(decoding: stamp, as: UTF8.self),
            ],
            brokenRule: nil, eventID: id)
    }

    private mutating func breakRule(_ rule: InvalidRule, _ row: inout GeneratedRow, validIDs: [String], now: UTCTimestamp) {
        row.brokenRule = rule
        row.eventID = nil
        switch rule {
        case .eventID:
            let id = row.cells[0]
            row.cells[0] = random.pick(["", "not-a-uuid", String(id.dropLast()), "g" + id.dropFirst(), "{\(id)}"])
        case .userID, .productID:
            row.cells[rule == .userID ? 1 : 2] = random.pick(["", "0", "-5", "2147483648", "12.0", "abc", "1e3", "+7"])
        case .eventType:
            row.cells[3] = random.pick(["", "click", "buy", "views"])
        case .price:
            if row.cells[3] == "purchase" {
                row.cells[4] = random.pick(["", "0", "-12.50", "0.001", "1e3", "NaN", "1000000.00", "+5", "12.5.0"])
            } else {
                row.cells[4] = random.pick(["12.50", "0", "free"])
            }
        case .eventTimestamp:
            let future = UTCTimestamp(millisecondsSinceEpoch: now.millisecondsSinceEpoch + 3_600_000).rfc3339
            row.cells[5] = random.pick(["", "2024-02-30 10:15:23", "2023-02-29T00:00:00Z", "yesterday", "2024-01-30 25:00:00", future])
        case .fieldCount:
            if random.int(in: 0...1) == 0 {
                row.cells.removeLast()
            } else {
                row.cells.append("extra")
            }
        case .duplicateEventID:
            row.cells[0] = random.pick(validIDs)
        }
    }
}

/// `1250` → `12.50`
func priceText(cents: Int) -> String {
    var out: [UInt8] = []
    FieldRules.appendPrice(cents: cents, to: &out)
    return String(decoding: out, as: UTF8.self)
}
