/// The duration grammar every tool, contract and bin/ script shares: a decimal number and a
/// unit, `250ms`, `1.5s`, `5m`, `1h`; a bare number means seconds. In milliseconds.
///
/// `DIGITS[.DIGITS][ms|s|m|h]`, nothing else: no sign, exponent, spaces or `inf`.
public func parseDurationMilliseconds(_ text: String) -> Int64? {
    let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
    var number = Substring(text)
    var scale: Int64 = 1000
    for (suffix, unitScale) in units where number.hasSuffix(suffix) {
        number = number.dropLast(suffix.count)
        scale = unitScale
        break
    }
    let parts = number.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
    guard let whole = parts.first, !whole.isEmpty, whole.count <= 12,
        whole.allSatisfy({ $0.isASCII && $0.isNumber })
    else { return nil }
    var fraction: Substring = ""
    if parts.count == 2 {
        fraction = parts[1]
        guard !fraction.isEmpty, fraction.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
    }
    guard let units = Int64(whole) else { return nil }
    var total = units * scale
    if !fraction.isEmpty {
        // In integers, rounded half up, as bin/lib/common.sh does: 0.FRACTION × scale.
        // Nine digits at most: finer is meaningless, and the product stays far from overflow.
        let digits = fraction.prefix(9)
        var denominator: Int64 = 1
        for _ in digits { denominator *= 10 }
        total += (Int64(digits)! * scale * 2 + denominator) / (2 * denominator)
    }
    return total
}
