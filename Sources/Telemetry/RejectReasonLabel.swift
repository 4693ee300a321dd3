/// Turns a reject reason into a label value with bounded cardinality.
///
/// Reasons are short, stable texts ("must be > 0", "not an integer"), but a few carry details:
/// "expected 6 fields, found 3", "database refused the row: <server message>",
/// "malformed JSON: expected a key string at byte 2". Every distinct label value is a time
/// series kept forever, so details go: the text before the first ": ", digits as "N", at most
/// 80 characters, and after `limit` distinct values everything new is "other".
public enum RejectReasonLabel {
    /// The value of the series present before any reject arrives.
    public static let none = "none"
    public static let other = "other"
    public static let limit = 100

    /// The label value for `reason`.
    public static func normalise(_ reason: String) -> String {
        var text = Substring(reason)
        if let colon = text.firstRange(of: ": ") { text = text[..<colon.lowerBound] }
        var out = ""
        var inDigits = false
        for ch in text.prefix(80) {
            if ch.isASCII && ch.isNumber {
                if !inDigits { out.append("N") }
                inDigits = true
            } else {
                out.append(ch)
                inDigits = false
            }
        }
        return out.isEmpty ? "unknown" : out
    }

    /// The label values handed out so far.
    struct Catalogue {
        var known: Set<String> = []

        mutating func label(for reason: String) -> String {
            let label = RejectReasonLabel.normalise(reason)
            if known.contains(label) { return label }
            guard known.count < RejectReasonLabel.limit else { return RejectReasonLabel.other }
            known.insert(label)
            return label
        }
    }
}
