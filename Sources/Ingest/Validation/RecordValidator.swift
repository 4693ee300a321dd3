/// Applies the validation contract (docs/validation.md) to one record line and writes the
/// normalised record, or collects every reason it fails.
///
/// Works on the scanned line's bytes: no `String` per row unless the row is rejected, no
/// Foundation date parsing, and the output is written straight into the caller's buffer.
public struct RecordValidator {
    public let rules: ValidationRules
    private var tracker: DuplicateTracker
    private let typeBytes: [[UInt8]]
    private let purchaseType: Int?
    private let unknownTypeReason: String
    private let mustBeEmptyReasons: [String]
    private let futureReason: String

    public init(rules: ValidationRules = ValidationRules()) {
        self.rules = rules
        tracker = DuplicateTracker(maxIDsPerFile: rules.maxIDsPerFile, recentIDWindow: rules.recentIDWindow)
        typeBytes = rules.eventTypes.map { Array($0.utf8) }
        purchaseType = rules.eventTypes.firstIndex(of: "purchase")
        unknownTypeReason = ValidationReason.unknownEventType(rules.eventTypes)
        mustBeEmptyReasons = rules.eventTypes.map { ValidationReason.mustBeEmpty(for: $0) }
        futureReason = ValidationReason.inFuture(rules.maxFutureMilliseconds)
    }

    /// Checks a record. When valid, appends the normalised record to `out` and returns no
    /// reasons; otherwise appends nothing and returns every reason (one per failing field).
    public mutating func validate(_ line: ProtocolLine, now: UTCTimestamp, into out: inout [UInt8]) -> [RejectReason] {
        var reasons: [RejectReason] = []

        // event_id
        var id = EventID(high: 0, low: 0)
        var idValid = false
        if let m = line.member(.eventID), m.kind != .null {
            if m.kind == .string {
                let parsed: EventID?? = line.withStringBytes(m) { raw in
                    let t = FieldRules.trimmed(raw)
                    return t.isEmpty ? .none : .some(EventID(t))
                }
                switch parsed {
                case .none: reasons.append(RejectReason(.eventID, ValidationReason.required))
                case .some(.none): reasons.append(RejectReason(.eventID, ValidationReason.notUUID, value: valueText(line, m)))
                case .some(.some(let v)):
                    id = v
                    idValid = true
                }
            } else {
                reasons.append(RejectReason(.eventID, ValidationReason.notUUID, value: valueText(line, m)))
            }
        } else {
            reasons.append(RejectReason(.eventID, ValidationReason.required))
        }

        let userID = checkID(line, .userID, &reasons)
        let productID = checkID(line, .productID, &reasons)

        // event_type
        var type = -1
        var typeValid = false
        if let m = line.member(.eventType), m.kind != .null {
            var empty = false
            if m.kind == .string {
                type = line.withStringBytes(m) { raw in
                    let t = FieldRules.trimmed(raw)
                    if t.isEmpty { empty = true }
                    return matchType(t)
                }
            }
            if empty {
                reasons.append(RejectReason(.eventType, ValidationReason.required))
            } else if type < 0 {
                reasons.append(RejectReason(.eventType, unknownTypeReason, value: valueText(line, m)))
            } else {
                typeValid = true
            }
        } else {
            reasons.append(RejectReason(.eventType, ValidationReason.required))
        }

        // price: required for a purchase, empty for any other type.
        var cents = -1
        let priceMember = line.member(.price)
        var priceParse: FieldRules.PriceParse?  // nil: empty
        if let m = priceMember {
            switch m.kind {
            case .null: break
            case .string:
                priceParse = line.withStringBytes(m) { raw in
                    let t = FieldRules.trimmed(raw)
                    return t.isEmpty ? nil : FieldRules.parsePrice(t)
                }
            case .number: priceParse = FieldRules.parsePrice(line.span(m))
            default: priceParse = .notDecimal
            }
        }
        if typeValid && type != purchaseType {
            if priceParse != nil {
                reasons.append(RejectReason(.price, mustBeEmptyReasons[type], value: valueText(line, priceMember!)))
            }
        } else if let priceParse {
            let reason: String?
            switch priceParse {
            case .cents(let c):
                cents = c
                reason = nil
            case .notDecimal: reason = ValidationReason.notDecimal
            case .notPositive: reason = ValidationReason.notPositive
            case .tooManyPlaces: reason = ValidationReason.tooManyPlaces
            case .tooLarge: reason = ValidationReason.tooLarge
            }
            if let reason { reasons.append(RejectReason(.price, reason, value: valueText(line, priceMember!))) }
        } else if typeValid {
            reasons.append(RejectReason(.price, ValidationReason.requiredForPurchase))
        }

        // event_timestamp
        var timestamp = UTCTimestamp(millisecondsSinceEpoch: 0)
        if let m = line.member(.eventTimestamp), m.kind != .null {
            var parsed: TimestampParse? = .notDateTime
            if m.kind == .string {
                parsed = line.withStringBytes(m) { raw in
                    let t = FieldRules.trimmed(raw)
                    return t.isEmpty ? nil : UTCTimestamp.parse(t)
                }
            }
            let reason: String?
            switch parsed {
            case nil: reason = ValidationReason.required
            case .instant(let t)?:
                timestamp = t
                reason =
                    t.millisecondsSinceEpoch > now.millisecondsSinceEpoch + rules.maxFutureMilliseconds ? futureReason : nil
            case .notDateTime?: reason = ValidationReason.notDateTime
            case .noSuchDate?: reason = ValidationReason.noSuchDate
            case .misplacedLeapSecond?: reason = ValidationReason.misplacedLeapSecond
            case .yearOutOfRange?: reason = ValidationReason.yearOutOfRange
            }
            if let reason {
                reasons.append(
                    RejectReason(.eventTimestamp, reason, value: parsed == nil ? nil : valueText(line, m)))
            }
        } else {
            reasons.append(RejectReason(.eventTimestamp, ValidationReason.required))
        }

        // Duplicates: only an accepted row claims its id, so a rejected first row does not
        // make a corrected second one a duplicate.
        if idValid {
            let duplicate = RecordValidator.withFile(line) { file in
                reasons.isEmpty ? !tracker.insert(id, file: file) : tracker.contains(id, file: file)
            }
            if duplicate {
                reasons.append(RejectReason(.eventID, ValidationReason.duplicate, value: id.text))
            }
        }
        guard reasons.isEmpty else { return reasons }

        writeRecord(
            line, id: id, userID: userID, productID: productID, type: type, cents: cents, timestamp: timestamp, &out)
        return reasons
    }

    /// Forgets the ids of a file whose end-of-file marker passed.
    public mutating func endOfFile(_ line: ProtocolLine) {
        guard let m = line.member(.file), m.kind == .string else { return }
        line.withStringBytes(m) { tracker.endOfFile($0) }
    }

    /// Files whose ids are currently remembered (for tests and memory checks).
    public var openFileCount: Int { tracker.openFileCount }

    // MARK: - Pieces

    private func checkID(_ line: ProtocolLine, _ key: ProtocolKey, _ reasons: inout [RejectReason]) -> Int {
        let field = key.eventField!
        guard let m = line.member(key), m.kind != .null else {
            reasons.append(RejectReason(field, ValidationReason.required))
            return 0
        }
        let parsed: FieldRules.IntegerParse?
        switch m.kind {
        case .number: parsed = FieldRules.parseID(line.span(m))
        case .string:
            parsed = line.withStringBytes(m) { raw in
                let t = FieldRules.trimmed(raw)
                return t.isEmpty ? nil : FieldRules.parseID(t)
            }
        default: parsed = .notInteger
        }
        switch parsed {
        case .value(let v)?: return v
        case nil: reasons.append(RejectReason(field, ValidationReason.required))
        case .notInteger?: reasons.append(RejectReason(field, ValidationReason.notInteger, value: valueText(line, m)))
        case .outOfRange?: reasons.append(RejectReason(field, ValidationReason.idOutOfRange, value: valueText(line, m)))
        }
        return 0
    }

    /// The index of the configured type `text` names, any case; -1 if none.
    @inline(__always)
    private func matchType(_ text: UnsafeRawBufferPointer) -> Int {
        outer: for (index, type) in typeBytes.enumerated() where type.count == text.count {
            for i in 0..<type.count {
                var c = text[i]
                if c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") { c |= 0x20 }
                if c != type[i] { continue outer }
            }
            return index
        }
        return -1
    }

    /// Static on purpose: an instance method here would copy `self` (and its id sets) while
    /// the closure mutates the tracker — a full set copy per row.
    private static func withFile<R>(_ line: ProtocolLine, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        guard let m = line.member(.file), m.kind == .string else { return body(nil) }
        return line.withStringBytes(m) { body($0) }
    }

    private func writeRecord(
        _ line: ProtocolLine, id: EventID, userID: Int, productID: Int, type: Int, cents: Int,
        timestamp: UTCTimestamp, _ out: inout [UInt8]
    ) {
        var w = JSONWriter()
        w.beginObject(&out)
        w.key("kind", &out)
        w.string("record", &out)
        let kindStart = line.member(.kind)?.keyStart ?? -1
        // Where each event field's (last) member starts, so other members are copied as they are.
        var fieldStarts: (Int, Int, Int, Int, Int, Int) = (-1, -1, -1, -1, -1, -1)
        withUnsafeMutableBytes(of: &fieldStarts) { raw in
            let s = raw.bindMemory(to: Int.self)
            for field in EventField.allCases {
                s[field.rawValue] = line.member(ProtocolKey(field))?.keyStart ?? -1
            }
        }
        let hasPrice = fieldStarts.4 >= 0
        for m in line.members {
            if m.keyStart == kindStart { continue }
            let field: EventField? =
                switch m.keyStart {
                case fieldStarts.0: .eventID
                case fieldStarts.1: .userID
                case fieldStarts.2: .productID
                case fieldStarts.3: .eventType
                case fieldStarts.4: .price
                case fieldStarts.5: .eventTimestamp
                default: nil
                }
            guard let field else {
                w.rawKey(line.keySpan(m), &out)
                w.raw(line.span(m), &out)
                continue
            }
            w.key(field.key, &out)
            switch field {
            case .eventID:
                out.append(UInt8(ascii: "\""))
                id.appendText(to: &out)
                out.append(UInt8(ascii: "\""))
            case .userID: w.int(userID, &out)
            case .productID: w.int(productID, &out)
            case .eventType: typeBytes[type].withUnsafeBytes { w.string($0, &out) }
            case .price: appendPrice(cents, w, &out)
            case .eventTimestamp:
                out.append(UInt8(ascii: "\""))
                timestamp.appendRFC3339(to: &out)
                out.append(UInt8(ascii: "\""))
            }
        }
        if !hasPrice {
            w.key("price", &out)
            w.null(&out)
        }
        w.endLine(&out)
    }

    @inline(__always)
    private func appendPrice(_ cents: Int, _ w: JSONWriter, _ out: inout [UInt8]) {
        if cents < 0 {
            w.null(&out)
        } else {
            out.append(UInt8(ascii: "\""))
            FieldRules.appendPrice(cents: cents, to: &out)
            out.append(UInt8(ascii: "\""))
        }
    }
}

/// A value as received, for a reason: a string's text, or the JSON text of anything else.
func valueText(_ line: ProtocolLine, _ m: JSONMember) -> String {
    if m.kind == .string { return line.withStringBytes(m) { String(decoding: $0, as: UTF8.self) } }
    return String(decoding: line.span(m), as: UTF8.self)
}
