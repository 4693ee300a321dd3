import Ingest

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a sample CSV says about each of its columns: the narrowest type every value fits, the
/// NULL tokens it holds, whether it is ever missing, whether its values repeat.
///
/// The type ladder is csvkit's `csvsql` (boolean, integer, decimal, date, timestamp, text),
/// extended with what PostgreSQL has and csvsql lacks: bigint, numeric(p,s), double precision
/// (exponents, NaN), timestamptz (an offset or `Z`), uuid, and day-first or month-first
/// timestamps as a `format`. Cells that are `""`, `NA`, `NULL`, `\N` (any case for the
/// words) are missing values: such a column is nullable, with the tokens it used.
public struct SampleProfile: Sendable {
    public struct Column: Sendable {
        /// The header cell as written.
        public var header: String
        public var type: ColumnType
        /// The NULL tokens seen, in the order first seen.
        public var nullTokens: [String]
        /// The temporal format when it is not ISO 8601 (`%d/%m/%Y %H:%M:%S`).
        public var format: String?
        /// Every value present and no value repeated.
        public var unique: Bool
        public var values: Int
    }

    public var columns: [Column]
    public var rows: Int

    /// The tokens taken for a missing value (case-insensitive for the words).
    public static let nullTokens = ["", "NA", "N/A", "NULL", "\\N"]

    /// Reads up to `maxRows` data rows of `path`.
    public static func read(path: String, maxRows: Int = 100_000) throws -> SampleProfile {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", errno: errno, path: path) }
        defer { close(fd) }
        let reader = CSVReader(fd: fd)
        guard let header = try reader.nextRow() else { throw SampleError(problem: "\(path): the file is empty (no header)") }
        if let problem = header.problem { throw SampleError(problem: "\(path):\(header.line): header: \(problem.description)") }
        let names = (0..<header.fieldCount).map { reader.fieldString($0).trimmingBlanks() }
        var trackers = names.map { ColumnTracker(header: $0) }
        var rows = 0
        while rows < maxRows, let row = try reader.nextRow() {
            if let problem = row.problem { throw SampleError(problem: "\(path):\(row.line): \(problem.description)") }
            rows += 1
            for index in trackers.indices {
                trackers[index].observe(index < row.fieldCount ? reader.fieldString(index) : "")
            }
        }
        return SampleProfile(columns: trackers.map { $0.column }, rows: rows)
    }
}

public struct SampleError: Error, CustomStringConvertible, Sendable {
    public var problem: String
    public var description: String { problem }
}

/// The candidate types still open for one column, narrowed by each value.
struct ColumnTracker {
    let header: String
    var nullTokens: [String] = []
    var values = 0
    var boolean = true
    var integer = true
    var decimal = true
    var double = true
    var uuid = true
    var integerMagnitude: UInt64 = 0
    var integerDigits = 0
    var scale = 0
    /// ISO dates, ISO timestamps without and with offset, and each non-ISO format still open.
    var date = true
    /// Every value an ISO timestamp; `zoned`: at least one with an offset (then timestamptz,
    /// values without one read in the contract's `time_zone`, UTC by default).
    var timestamp = true
    var zoned = false
    var formats: [String] = ColumnTracker.formats
    var seen = Set<String>()
    var repeated = false

    /// Non-ISO timestamp formats tried, day-first before month-first (values decide).
    static let formats = [
        "%d/%m/%Y %H:%M:%S %z", "%m/%d/%Y %H:%M:%S %z", "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M",
        "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M",
        "%Y/%m/%d %H:%M:%S",
    ]

    init(header: String) { self.header = header }

    mutating func observe(_ raw: String) {
        let cell = raw.trimmingBlanks()
        if let token = SampleProfile.nullTokens.first(where: { $0.lowercased() == cell.lowercased() }) {
            let written = token.isEmpty ? "" : cell
            if !nullTokens.contains(written) { nullTokens.append(written) }
            return
        }
        values += 1
        if !repeated && seen.count < 100_000 && !seen.insert(cell).inserted { repeated = true }
        let lower = cell.lowercased()
        if boolean && !["true", "false", "t", "f", "yes", "no"].contains(lower) { boolean = false }
        let number = NumberShape(cell)
        if integer {
            if let n = number, n.fraction == 0, !n.exponent, !n.leadingZero, let m = UInt64(n.digits) {
                integerMagnitude = max(integerMagnitude, m)
            } else {
                integer = false
            }
        }
        if decimal {
            if let n = number, !n.exponent, !n.leadingZero {
                integerDigits = max(integerDigits, n.integerDigits)
                scale = max(scale, n.fraction)
            } else {
                decimal = false
            }
        }
        if double && (number == nil || number!.leadingZero) && !["nan", "infinity", "-infinity", "inf", "-inf"].contains(lower) {
            double = false
        }
        if uuid && !cell.utf8.withContiguousBuffer({ RowKey(UnsafeRawBufferPointer($0)) != nil }) { uuid = false }
        if date || timestamp || !formats.isEmpty { observeTemporal(cell) }
    }

    private mutating func observeTemporal(_ cell: String) {
        let bytes = Array(cell.utf8)
        let looksISO = bytes.count >= 10 && bytes[4] == UInt8(ascii: "-") && bytes[7] == UInt8(ascii: "-")
        if date && !(looksISO && bytes.count == 10 && accepts(.date, cell, format: nil)) { date = false }
        if timestamp && !(looksISO && bytes.count > 10 && accepts(.timestamptz, cell, format: nil)) { timestamp = false }
        if timestamp && (bytes.last == UInt8(ascii: "Z") || bytes.last == UInt8(ascii: "z") || hasTrailingOffset(bytes)) { zoned = true }
        formats = formats.filter { accepts(.timestamp, cell, format: $0) }
    }

    private func hasTrailingOffset(_ b: [UInt8]) -> Bool {
        // ±hh:mm or ±hhmm or ±hh after the time.
        for length in [6, 5, 3] where b.count > 10 + length {
            let sign = b[b.count - length]
            if sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") { return true }
        }
        return false
    }

    private func accepts(_ type: ColumnType, _ cell: String, format: String?) -> Bool {
        var rules = ColumnRules()
        if let format { rules.formats = [.pattern(format)] }
        let parser = ColumnValueParser(ContractColumn(name: "v", type: type, nullValues: [], rules: rules))
        return parser.normalisedForm(of: cell) != nil
    }

    var column: SampleProfile.Column {
        var type = ColumnType.text
        var format: String?
        if values == 0 {
            type = .text
        } else if boolean {
            type = .boolean
        } else if integer {
            type =
                integerMagnitude <= UInt64(Int32.max)
                ? .integer : integerMagnitude <= UInt64(Int64.max) ? .bigint : .numeric(precision: nil, scale: nil)
        } else if decimal {
            // Headroom for larger values than the sample's: at least 8 integer digits.
            type = .numeric(precision: min(1000, max(integerDigits, 8) + scale), scale: scale)
        } else if double {
            type = .doublePrecision
        } else if uuid {
            type = .uuid
        } else if date {
            type = .date
        } else if timestamp {
            type = zoned ? .timestamptz : .timestamp
        } else if let first = formats.first {
            type = first.contains("%z") ? .timestamptz : .timestamp
            format = first
        }
        return SampleProfile.Column(
            header: header, type: type, nullTokens: nullTokens, format: format, unique: !repeated && nullTokens.isEmpty && values > 0,
            values: values)
    }
}

/// A number's shape: `-?digits[.digits][e±digits]`.
struct NumberShape: Equatable {
    var digits: String
    var integerDigits: Int
    var fraction: Int
    var exponent: Bool
    var leadingZero: Bool

    init?(_ text: String) {
        var s = Substring(text)
        if s.first == "-" || s.first == "+" { s = s.dropFirst() }
        var mantissa = s
        exponent = false
        if let e = s.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            let power = s[s.index(after: e)...].drop { $0 == "+" || $0 == "-" }
            guard !power.isEmpty, power.allSatisfy(\.isASCIIDigit) else { return nil }
            mantissa = s[..<e]
            exponent = true
        }
        let parts = mantissa.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, !whole.isEmpty, whole.allSatisfy(\.isASCIIDigit) else { return nil }
        if parts.count == 2 { guard !parts[1].isEmpty, parts[1].allSatisfy(\.isASCIIDigit) else { return nil } }
        digits = String(whole)
        integerDigits = whole.drop { $0 == "0" }.count
        fraction = parts.count == 2 ? parts[1].count : 0
        leadingZero = whole.count > 1 && whole.first == "0"
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}

extension String.UTF8View {
    func withContiguousBuffer<R>(_ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let r = withContiguousStorageIfAvailable(body) { return r }
        return Array(self).withUnsafeBufferPointer(body)
    }
}
