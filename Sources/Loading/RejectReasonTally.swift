import Ingest

/// Counts the `reason` texts of reject lines, for `ingest_rows_rejected_total{reason}`.
struct RejectReasonTally {
    private(set) var counts: [String: Int] = [:]

    /// Adds each reason of a reject line's `reasons` array (a line without one counts as
    /// "unknown"). Decoded by the line protocol's own reader of that array
    /// (`ProtocolLine.reasons()`): dead letters are the slow path, a `String` per reason is fine.
    mutating func add(_ line: ProtocolLine) {
        var found = false
        for reason in line.reasons() where !reason.reason.isEmpty {
            counts[reason.reason, default: 0] += 1
            found = true
        }
        if !found { counts["unknown", default: 0] += 1 }
    }

    mutating func add(reason: String) {
        counts[reason, default: 0] += 1
    }
}
