import Ingest

/// Draws cell texts for one contract column: values its type and rules accept, and values that
/// break one named rule. Every draw is checked afterwards by the validator itself
/// (`ContractRowGenerator`), so a bound drawn a little off is retried, never written as valid.
struct ColumnSampler {
    let column: ContractColumn
    let name: String
    private let kind: Kind
    private var pattern: PatternSampler?
    /// Said once by `gen` (stderr): what this column's values cannot honour exactly.
    private(set) var note: String?

    enum Kind {
        case integer(ClosedRange<Int64>)
        /// Whole units of 10^-scale.
        case decimal(ClosedRange<Int64>, scale: Int)
        case float(ClosedRange<Double>)
        case text(ClosedRange<Int>)
        case accepted([String])
        case boolean
        /// Days since 1970-01-01.
        case date(ClosedRange<Int64>)
        /// Microseconds since 1970-01-01 UTC.
        case timestamp(ClosedRange<Int64>, zoned: Bool)
        case uuid
        case json
    }

    struct Unusable: Error { var problem: String }

    /// `now` bounds timestamps with a `max_future` (values stay at or before it).
    init(_ column: ContractColumn, now: UTCTimestamp) throws(Unusable) {
        self.column = column
        name = column.name
        let rules = column.rules
        if let p = rules.pattern {
            do {
                pattern = try PatternSampler(p)
            } catch {
                // Drawn as plain text instead, kept only where it matches (the validator decides);
                // the pattern is then never broken on purpose.
                note =
                    "column \(column.name): gen cannot draw text for pattern \(p) (\(error.problem)): plain text is drawn and kept where it matches; no row breaks this pattern on purpose"
            }
        }
        if let values = rules.acceptedValues {
            kind = .accepted(values)
            return
        }
        let nowMicros = now.millisecondsSinceEpoch * 1000
        switch column.type {
        case .smallint, .integer, .bigint:
            let type = column.type.integerRange!
            var lo = max(type.lowerBound, -1_000_000)
            var hi = min(type.upperBound, 1_000_000)
            if let b = rules.lower, let v = Int64(b.text) {
                lo = max(type.lowerBound, b.exclusive ? v &+ 1 : v)
                if rules.upper == nil { hi = lo > type.upperBound &- 1_000_000 ? type.upperBound : lo + 1_000_000 }
            }
            if let b = rules.upper, let v = Int64(b.text) {
                hi = min(type.upperBound, b.exclusive ? v &- 1 : v)
                if rules.lower == nil { lo = hi < type.lowerBound &+ 1_000_000 ? type.lowerBound : hi - 1_000_000 }
            }
            guard lo <= hi else { throw Unusable(problem: "column \(column.name): its range holds no value") }
            kind = .integer(lo...hi)
        case .numeric(let precision, _):
            let scale = rules.scale ?? 2
            let digits = min(precision.map { $0 - scale } ?? 6, 6)
            let unit = Double(power10(scale))
            let limit = Double(power10(digits)) * unit - 1
            var lo = -limit
            var hi = limit
            if let b = rules.lower, let v = Double(b.text) { lo = max(lo, (v * unit).rounded(.up) + (b.exclusive ? 1 : 0)) }
            if let b = rules.upper, let v = Double(b.text) { hi = min(hi, (v * unit).rounded(.down) - (b.exclusive ? 1 : 0)) }
            guard lo <= hi else { throw Unusable(problem: "column \(column.name): its range holds no value") }
            kind = .decimal(Int64(lo)...Int64(hi), scale: scale)
        case .real, .doublePrecision:
            let lo = rules.lower.flatMap { Double($0.text) } ?? -1000
            let hi = rules.upper.flatMap { Double($0.text) } ?? max(lo + 2000, 1000)
            guard lo <= hi else { throw Unusable(problem: "column \(column.name): its range holds no value") }
            kind = .float(lo...hi)
        case .text, .varchar:
            let lo = rules.minLength ?? 1
            let hi = rules.maxLength ?? max(lo, 40)
            guard lo <= hi else { throw Unusable(problem: "column \(column.name): its length range holds no value") }
            kind = .text(lo...min(hi, lo + 40))
        case .boolean: kind = .boolean
        case .date:
            var lo = Int64(UTCTimestamp.daysFromCivil(year: 1990, month: 1, day: 1))
            var hi = Int64(UTCTimestamp.daysFromCivil(year: 2030, month: 12, day: 31))
            if let b = rules.lower, let d = Self.days(b.text) { lo = d + (b.exclusive ? 1 : 0) }
            if let b = rules.upper, let d = Self.days(b.text) { hi = d - (b.exclusive ? 1 : 0) }
            if rules.maxFutureMilliseconds != nil { hi = min(hi, nowMicros / 86_400_000_000) }
            guard lo <= hi else { throw Unusable(problem: "column \(column.name): its range holds no date") }
            kind = .date(lo...hi)
        case .timestamp, .timestamptz:
            var lo = nowMicros - 30 * 86_400_000_000
            var hi = rules.maxFutureMilliseconds != nil ? nowMicros : nowMicros + 30 * 86_400_000_000
            if let b = rules.lower, let m = Self.micros(b.text, offset: rules.utcOffsetSeconds) { lo = max(lo, m + 1_000_000) }
            if let b = rules.upper, let m = Self.micros(b.text, offset: rules.utcOffsetSeconds) { hi = min(hi, m - 1_000_000) }
            if lo > hi, let b = rules.lower, let m = Self.micros(b.text, offset: rules.utcOffsetSeconds) {
                lo = m + 1_000_000  // a range wholly in the past or future: draw inside it
                hi =
                    rules.upper.flatMap { Self.micros($0.text, offset: rules.utcOffsetSeconds) }.map { $0 - 1_000_000 } ?? lo
                    + 86_400_000_000
            }
            guard lo <= hi else { throw Unusable(problem: "column \(column.name): its range holds no timestamp") }
            kind = .timestamp(lo...hi, zoned: column.type == .timestamptz)
        case .uuid: kind = .uuid
        case .json, .jsonb: kind = .json
        }
    }

    /// A value the column accepts (not a NULL token; the caller draws those).
    func value(_ random: inout SplitMix64, now: UTCTimestamp) -> String {
        if let pattern { return pattern.draw(&random) }
        switch kind {
        case .integer(let range): return String(Self.draw(range, &random))
        case .decimal(let range, let scale): return Self.decimalText(units: Self.draw(range, &random), scale: scale)
        case .float(let range):
            let v = range.lowerBound + random.unit() * (range.upperBound - range.lowerBound)
            return String((v * 100).rounded() / 100)
        case .text(let lengths): return Self.text(length: random.int(in: lengths), &random)
        case .accepted(let values):
            let v = random.pick(values)
            return column.rules.caseSensitive || random.int(in: 0...3) != 0 ? v : v.uppercased()
        case .boolean:
            let list = random.int(in: 0...1) == 0 ? column.rules.trueValues : column.rules.falseValues
            return random.pick(Array(list.prefix(2)))
        case .date(let range): return dateText(days: Self.draw(range, &random))
        case .timestamp(let range, let zoned):
            // Whole milliseconds: the normalised form shows three places.
            let micros = Self.draw(range, &random) / 1000 * 1000
            return timestampText(micros: micros, zoned: zoned, &random)
        case .uuid:
            let id = random.uuid().text
            return random.int(in: 0...7) == 0 ? id.uppercased() : id
        case .json:
            return "{\"n\":\(random.int(in: 0...9999)),\"tag\":\"\(Self.text(length: random.int(in: 1...8), &random, plain: true))\"}"
        }
    }

    /// A value that is unique per `sequence` (key columns): a plain draw would repeat.
    func keyValue(sequence: Int64, _ random: inout SplitMix64, now: UTCTimestamp) -> String? {
        switch kind {
        case .integer(let range) where range.upperBound - range.lowerBound > sequence:
            return String(range.lowerBound + sequence)
        case .decimal(let range, let scale) where range.upperBound - range.lowerBound > sequence:
            return Self.decimalText(units: range.lowerBound + sequence, scale: scale)
        case .text(let lengths) where lengths.upperBound >= 12 && pattern == nil:
            return "k" + String(sequence) + Self.text(length: max(0, lengths.lowerBound - 12), &random, plain: true)
        case .timestamp(let range, let zoned) where range.upperBound - range.lowerBound > sequence * 1_000_000:
            return timestampText(micros: range.lowerBound / 1_000_000 * 1_000_000 + sequence * 1_000_000, zoned: zoned, &random)
        case .date(let range) where range.upperBound - range.lowerBound > sequence:
            return dateText(days: range.lowerBound + sequence)
        case .uuid: return random.uuid().text
        default: return nil
        }
    }

    /// The rules of this column a value can break, by name (manifest `rule`: `column.name`).
    var breakableRules: [String] {
        var rules: [String] = []
        let r = column.rules
        if column.notNull && !column.nullValues.isEmpty { rules.append("not_null") }
        switch kind {
        case .integer, .decimal, .float, .boolean, .date, .timestamp, .uuid, .json: rules.append("data_type")
        default: break
        }
        if column.type.isInteger || column.type.isTemporal || column.type.isNumeric {
            if r.lower != nil { rules.append("range_min") }
            if r.upper != nil { rules.append("range_max") }
        }
        if column.type.isInteger && r.upper == nil { rules.append("type_range") }
        if case .numeric(let p?, _) = column.type, p < 18 { rules.append("type_range") }
        if case .decimal(_, let scale) = kind, r.scale != nil, scale < 17 { rules.append("scale") }
        if let m = r.minLength, m > 1 { rules.append("length_min") }
        if r.maxLength != nil && r.acceptedValues == nil && pattern == nil { rules.append("length_max") }
        if r.acceptedValues != nil { rules.append("accepted_values") }
        if pattern != nil { rules.append("pattern") }
        if r.maxFutureMilliseconds != nil { rules.append("max_future") }
        return rules
    }

    /// A text breaking `rule`, given a valid value `valid` of this column; nil when there is none.
    func breaking(_ rule: String, valid: String, _ random: inout SplitMix64, now: UTCTimestamp) -> String? {
        let r = column.rules
        switch rule {
        case "not_null": return column.nullValues.contains("") ? "" : column.nullValues.first
        case "data_type":
            switch kind {
            case .integer: return random.pick(["abc", "12.5", "1e3", "+-7"])
            case .decimal: return random.pick(["abc", "12.5.0", "1e3"])
            case .float: return random.pick(["abc", "1.2.3", "--1"])
            case .boolean: return random.pick(["maybe", "2"])
            case .date: return r.formats.first == .iso8601 ? random.pick(["yesterday", "2023-02-29"]) : "yesterday"
            case .timestamp: return random.pick(["yesterday", "10:15 tomorrow"])
            case .uuid: return random.pick(["not-a-uuid", String(valid.dropLast())])
            case .json: return random.pick(["{not json", "[1,2"])
            default: return nil
            }
        case "range_min", "range_max":
            let bound = rule == "range_min" ? r.lower! : r.upper!
            let step = rule == "range_min" ? -1 : 1
            switch kind {
            case .integer:
                guard let v = Int64(bound.text) else { return nil }
                let (out, overflow) = v.addingReportingOverflow(bound.exclusive ? 0 : Int64(step))
                return overflow ? nil : String(out)
            case .decimal(_, let scale):
                guard let v = Double(bound.text) else { return nil }
                return Self.decimalText(
                    units: Int64((v * Double(power10(scale))).rounded()) + (bound.exclusive ? 0 : Int64(step)), scale: scale)
            case .float:
                guard let v = Double(bound.text) else { return nil }
                return String(bound.exclusive ? v : v + Double(step))
            case .date:
                guard let d = Self.days(bound.text) else { return nil }
                return dateText(days: d + (bound.exclusive ? 0 : Int64(step)))
            case .timestamp(_, let zoned):
                guard let m = Self.micros(bound.text, offset: r.utcOffsetSeconds) else { return nil }
                return timestampText(micros: m + Int64(step) * (bound.exclusive ? 0 : 1_000_000), zoned: zoned, &random)
            default: return nil
            }
        case "type_range":
            if let range = column.type.integerRange, range.upperBound < Int64.max { return String(range.upperBound) + "0" }
            if column.type == .bigint { return "9223372036854775808" }
            if case .numeric(let p?, let s?) = column.type { return String(repeating: "9", count: p - s + 1) }
            return nil
        case "scale":
            guard case .decimal(_, let scale) = kind else { return nil }
            return valid.contains(".") ? valid + "7" : valid + "." + String(repeating: "0", count: scale) + "7"
        case "length_min": return Self.text(length: r.minLength! - 1, &random, plain: true)
        case "length_max": return Self.text(length: r.maxLength! + 1, &random, plain: true)
        case "accepted_values": return "zz_" + Self.text(length: 4, &random, plain: true)
        case "pattern": return random.pick(["~", "~" + valid, valid + "~"])
        case "max_future":
            let micros = now.millisecondsSinceEpoch * 1000 + r.maxFutureMilliseconds! * 1000 + 3_600_000_000
            if column.type == .date { return dateText(days: micros / 86_400_000_000 + 2) }
            return timestampText(micros: micros, zoned: column.type == .timestamptz, &random)
        default: return nil
        }
    }

    // MARK: - Writing values as the contract's formats read them

    func dateText(days: Int64) -> String {
        let (y, m, d) = UTCTimestamp.civilFromDays(Int(days))
        switch column.rules.formats.first ?? .iso8601 {
        case .pattern(let p): return Self.render(p, year: y, month: m, day: d, hour: 0, minute: 0, second: 0, millisecond: 0, offset: 0)
        case .epochSeconds: return String(days * 86_400)
        case .epochMilliseconds: return String(days * 86_400_000)
        case .iso8601: return Self.render("%Y-%m-%d", year: y, month: m, day: d, hour: 0, minute: 0, second: 0, millisecond: 0, offset: 0)
        }
    }

    /// An instant in the column's first format: a zoned value with an offset (the column's
    /// zone, or another one: the instant is the same), a zoneless one as wall time in the
    /// column's zone.
    func timestampText(micros: Int64, zoned: Bool, _ random: inout SplitMix64) -> String {
        let format = column.rules.formats.first ?? .iso8601
        switch format {
        case .epochSeconds: return String(micros / 1_000_000)
        case .epochMilliseconds: return String(micros / 1000)
        default: break
        }
        var offset = column.rules.utcOffsetSeconds
        var pattern = "%Y-%m-%d %H:%M:%S.%f"
        if case .pattern(let p) = format {
            pattern = p
        } else if zoned {
            if random.int(in: 0...2) == 0 { offset = random.pick([0, 3600, -18000, 19800]) }
            pattern = random.int(in: 0...1) == 0 ? "%Y-%m-%dT%H:%M:%S.%f%z" : "%Y-%m-%d %H:%M:%S.%f%z"
        }
        let wall = micros + Int64(offset) * 1_000_000
        var days = wall / 86_400_000_000
        var rest = wall % 86_400_000_000
        if rest < 0 {
            rest += 86_400_000_000
            days -= 1
        }
        let (y, m, d) = UTCTimestamp.civilFromDays(Int(days))
        let seconds = Int(rest / 1_000_000)
        return Self.render(
            pattern, year: y, month: m, day: d, hour: seconds / 3600, minute: seconds / 60 % 60, second: seconds % 60,
            millisecond: Int(rest % 1_000_000 / 1000), offset: offset)
    }

    static func render(
        _ pattern: String, year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, millisecond: Int, offset: Int
    ) -> String {
        func pad(_ v: Int, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        var out = ""
        var chars = pattern.makeIterator()
        while let c = chars.next() {
            guard c == "%", let d = chars.next() else {
                out.append(c)
                continue
            }
            switch d {
            case "Y": out += pad(year, 4)
            case "m": out += pad(month, 2)
            case "d": out += pad(day, 2)
            case "H": out += pad(hour, 2)
            case "M": out += pad(minute, 2)
            case "S": out += pad(second, 2)
            case "f": out += pad(millisecond, 3)
            case "z": out += (offset < 0 ? "-" : "+") + pad(abs(offset) / 3600, 2) + ":" + pad(abs(offset) / 60 % 60, 2)
            default: out.append(d)
            }
        }
        return out
    }

    static func days(_ text: String) -> Int64? {
        let parts = text.prefix(10).split(separator: "-")
        guard parts.count == 3, let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]) else { return nil }
        return Int64(UTCTimestamp.daysFromCivil(year: y, month: m, day: d))
    }

    /// An ISO 8601 bound's instant (a bound without offset is in the column's zone).
    static func micros(_ text: String, offset: Int) -> Int64? {
        if let t = UTCTimestamp(parsing: text) { return t.millisecondsSinceEpoch * 1000 }
        guard let d = days(text) else { return nil }
        return (d * 86_400 - Int64(offset)) * 1_000_000
    }

    static func draw(_ range: ClosedRange<Int64>, _ random: inout SplitMix64) -> Int64 {
        let span = UInt64(bitPattern: range.upperBound &- range.lowerBound) &+ 1
        if span == 0 { return Int64(bitPattern: random.next()) }
        return range.lowerBound &+ Int64(bitPattern: random.next().multipliedFullWidth(by: span).high)
    }

    static func decimalText(units: Int64, scale: Int) -> String {
        guard scale > 0 else { return String(units) }
        let magnitude = units.magnitude
        let unit = UInt64(power10(scale))
        let fraction = String(magnitude % unit)
        return (units < 0 ? "-" : "") + String(magnitude / unit) + "." + String(repeating: "0", count: scale - fraction.count) + fraction
    }

    /// Prose-like text with what CSV must quote (commas, quotes, a line break now and then) and
    /// letters beyond ASCII; `plain`: letters only. `length` in Unicode scalars, as rules count.
    static func text(length: Int, _ random: inout SplitMix64, plain: Bool = false) -> String {
        let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        let extras: [Character] = [" ", " ", ",", "\"", "é", "ü", "日", "'", ";", "\n"]
        var out = ""
        for index in 0..<max(0, length) {
            // No space or line break first or last: a text column keeps them, but a reader's eye does not.
            if plain || index == 0 || index == length - 1 || random.int(in: 0...5) != 0 {
                out.append(random.pick(letters))
            } else {
                out.append(random.pick(extras))
            }
        }
        return out
    }
}

func power10(_ n: Int) -> Int64 {
    var v: Int64 = 1
    for _ in 0..<max(0, min(n, 18)) { v *= 10 }
    return v
}
