import Ingest

/// What `validate` did with one input line.
public enum ValidatedLine: Equatable, Sendable {
    /// A record that passed, written normalised.
    case valid
    /// A record that failed, or a line that was not JSON (or too long): written as a reject.
    case rejected
    /// A reject from upstream, passed through unchanged.
    case passedReject
    /// An end-of-file marker, passed through unchanged: flush after it.
    case endOfFile
    /// A line of a kind this version does not know, passed through unchanged.
    case other
    /// An empty or whitespace-only line: skipped.
    case blank
}

/// Counts for `validate --summary`.
public struct ValidationCounts: Equatable, Sendable {
    /// Data rows seen: records checked plus rejects from upstream plus unreadable lines.
    public var rowsIn = 0
    public var valid = 0
    /// Rows written as rejects (ours and upstream's).
    public var rejected = 0
    public var markers = 0
    /// Per `RejectReason.summaryKey` (`price: must be > 0`), counted once per reason.
    public var reasons: [String: Int] = [:]

    public init() {}

    /// The `--summary` text: totals, then `count  reason` lines, most frequent first.
    public var summary: String {
        var lines = [
            "rows in   \(rowsIn)",
            "valid     \(valid)",
            "rejected  \(rejected)",
        ]
        let sorted = reasons.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        let width = max(7, String(sorted.first?.value ?? 0).count)
        for (reason, count) in sorted {
            let number = String(count)
            lines.append(String(repeating: " ", count: max(0, width - number.count)) + number + "  " + reason)
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// The `validate` stage over protocol lines: records become normalised records or rejects;
/// rejects, end-of-file markers and unknown kinds pass through byte for byte; a line that is
/// not JSON becomes a reject. Never stops on bad input.
public struct StreamValidator {
    public var validator: RecordValidator
    /// Write only rejects (valid records are checked, counted and dropped).
    public var rejectsOnly: Bool
    /// The clock for the "not in the future" rule (tests pin it).
    public var clock: () -> UTCTimestamp {
        didSet { recordsSinceReading = Self.recordsPerReading }
    }
    public private(set) var counts = ValidationCounts()
    private var decoder = LineDecoder()
    /// The clock is read once per `recordsPerReading` records (a reading per record was 2.7%
    /// of validate's cycles). An older reading is never later than the true time, so it can
    /// only make `max_future` stricter: a record it rejects for being in the future is checked
    /// again against a fresh reading, and the verdicts are those of a reading per record.
    private var now = UTCTimestamp(millisecondsSinceEpoch: 0)
    private var recordsSinceReading = StreamValidator.recordsPerReading
    private static let recordsPerReading = 64

    public init(
        rules: ValidationRules = ValidationRules(), rejectsOnly: Bool = false, clock: @escaping () -> UTCTimestamp = UTCTimestamp.now
    ) {
        validator = RecordValidator(rules: rules)
        self.rejectsOnly = rejectsOnly
        self.clock = clock
    }

    /// Handles one line (without its newline); `inputLine` is its 1-based number on the input.
    /// Blank lines (only spaces, tabs, CR) are skipped, as NDJSON readers commonly do.
    public mutating func process(_ bytes: UnsafeRawBufferPointer, inputLine: Int, into out: inout [UInt8]) -> ValidatedLine {
        if bytes.count == 0 || isBlank(bytes) { return .blank }
        let line: ProtocolLine
        do {
            line = try decoder.decode(bytes)
        } catch {
            counts.rowsIn += 1
            counts.rejected += 1
            counts.reasons["malformed JSON", default: 0] += 1
            LineEncoder.appendMalformedLine(bytes, lineNumber: inputLine, problem: error.description, into: &out)
            return .rejected
        }
        switch line.kind {
        case .record:
            counts.rowsIn += 1
            let mark = out.count
            if recordsSinceReading == Self.recordsPerReading {
                now = clock()
                recordsSinceReading = 0
            }
            recordsSinceReading += 1
            var reasons = validator.validate(line, now: now, into: &out)
            if !reasons.isEmpty && recordsSinceReading > 1
                && reasons.contains(where: { $0.reason.hasSuffix(ValidationReason.inFutureSuffix) })
            {
                // A rejected record left no trace (nothing written, no key claimed): judge it
                // again by the clock as it is now.
                now = clock()
                recordsSinceReading = 1
                reasons = validator.validate(line, now: now, into: &out)
            }
            if reasons.isEmpty {
                counts.valid += 1
                if rejectsOnly { out.removeSubrange(mark...) }
                return .valid
            }
            counts.rejected += 1
            for reason in reasons { counts.reasons[reason.summaryKey, default: 0] += 1 }
            LineEncoder.appendReject(from: line, reasons: reasons, into: &out)
            return .rejected
        case .reject:
            counts.rowsIn += 1
            counts.rejected += 1
            for reason in line.reasons() { counts.reasons[reason.summaryKey, default: 0] += 1 }
            passThrough(bytes, &out)
            return .passedReject
        case .endOfFile:
            counts.markers += 1
            validator.endOfFile(line)
            if !rejectsOnly { passThrough(bytes, &out) }
            return .endOfFile
        case .other(let kind):
            // An abandoned file is read again whole: forget its ids, as at a marker, or the
            // re-read rows would be taken for duplicates.
            if kind == "abandon" { validator.endOfFile(line) }
            if !rejectsOnly { passThrough(bytes, &out) }
            return .other
        }
    }

    /// A line longer than the reader's limit: a reject saying so (its text was not kept).
    public mutating func processOverlong(byteCount: Int, limit: Int, inputLine: Int, into out: inout [UInt8]) {
        counts.rowsIn += 1
        counts.rejected += 1
        counts.reasons[LineEncoder.overlongReason(limit: limit).summaryKey, default: 0] += 1
        LineEncoder.appendOverlongLine(byteCount: byteCount, limit: limit, inputLine: inputLine, into: &out)
    }

    private func isBlank(_ bytes: UnsafeRawBufferPointer) -> Bool {
        // Cheap: a JSON line starts with `{` (or spaces before it).
        if bytes[0] == UInt8(ascii: "{") { return false }
        return bytes.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
    }

    @inline(__always)
    private func passThrough(_ bytes: UnsafeRawBufferPointer, _ out: inout [UInt8]) {
        out.append(contentsOf: bytes)
        out.append(0x0A)
    }
}
