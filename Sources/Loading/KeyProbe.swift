import Ingest
import Postgres

/// Finding which records' keys are already in the table, by the contract's key (one column or
/// several, of any type), through the table's primary key index.
///
/// Keys travel as array parameters, one per key column, cast to the column's type without its
/// modifier (`numeric`, not `numeric(10,2)`: a probe must not fail on a value the server would
/// refuse anyway); the answer is the ordinals of the keys found, so no value is compared as
/// text (the server's spelling of a timestamp or uuid need not be ours).
enum KeyProbe {
    /// `SELECT <select> FROM unnest($1::uuid[], …) WITH ORDINALITY AS u(k0, …, i) CROSS JOIN
    /// LATERAL (… LIMIT 1)`: the lateral join makes one index probe per key, whatever the
    /// planner's statistics say (they predate this transaction's rows). Nil without a key.
    static func sql(plan: LoadPlan, table: String, select: String) -> String? {
        guard !plan.key.isEmpty else { return nil }
        let arrays = plan.key.enumerated().map { "$\($0.offset + 1)::\(plan.formats[$0.element].probeType)[]" }
        let names = plan.key.indices.map { "k\($0)" }
        let match = plan.key.enumerated().map { "t.\(quoteIdentifier(plan.names[$0.element])) = u.k\($0.offset)" }
        return """
            SELECT \(select) FROM unnest(\(arrays.joined(separator: ", "))) WITH ORDINALITY AS u(\(names.joined(separator: ", ")), i)
            CROSS JOIN LATERAL (SELECT 1 FROM \(table) t WHERE \(match.joined(separator: " AND ")) LIMIT 1) AS hit
            """
    }

    /// The key of the record in `line`, one text per key column; nil when the plan has no key
    /// or a key value is absent, null or not in canonical form for its column (such a row is
    /// not probed: the server judges it). A uuid is lowercased, so case does not hide a repeat.
    static func key(of line: ProtocolLine, plan: LoadPlan) -> [String]? {
        guard !plan.key.isEmpty else { return nil }
        return withUnsafeTemporaryAllocation(of: Int32.self, capacity: max(plan.columnCount, 1)) { slots in
            plan.locate(line, into: slots.baseAddress!)
            var values: [String] = []
            for column in plan.key {
                let slot = Int(slots[column])
                guard slot >= 0 else { return nil }
                let m = line.members[slot]
                guard m.kind != .null, isCanonical(m, of: line, as: plan.formats[column]) else { return nil }
                var text =
                    m.kind == .string
                    ? line.withStringBytes(m) { String(decoding: $0, as: UTF8.self) } : String(decoding: line.span(m), as: UTF8.self)
                if plan.formats[column] == .uuid { text = text.lowercased() }
                values.append(text)
            }
            return values
        }
    }

    /// Appends the key of the record in `line` as its binary COPY values (each with its length
    /// word, so two keys are one key exactly when these bytes are equal); false when the plan
    /// has no key or a key value is absent, null or not in canonical form. `slots` has room for
    /// the plan's columns.
    static func appendKey(of line: ProtocolLine, plan: LoadPlan, slots: UnsafeMutablePointer<Int32>, into out: inout [UInt8]) -> Bool {
        guard !plan.key.isEmpty else { return false }
        plan.locate(line, into: slots)
        for column in plan.key {
            let slot = Int(slots[column])
            guard slot >= 0 else { return false }
            let m = line.members[slot]
            guard m.kind != .null else { return false }
            let written = withUnsafeTemporaryAllocation(byteCount: line.span(m).count + 64, alignment: 8) { scratch -> Bool in
                var writer = CopyBinary.TupleWriter(base: scratch.baseAddress!)
                guard CopyBinary.appendValue(m, of: line, as: plan.formats[column], &writer) else { return false }
                out.append(contentsOf: UnsafeRawBufferPointer(start: scratch.baseAddress!, count: writer.count))
                return true
            }
            guard written else { return false }
        }
        return true
    }

    /// Whether the binary encoder takes the value (so the probe's cast cannot fail on it).
    private static func isCanonical(_ m: JSONMember, of line: ProtocolLine, as format: WireFormat) -> Bool {
        let room = line.span(m).count + 64
        return withUnsafeTemporaryAllocation(byteCount: room, alignment: 8) { scratch in
            var out = CopyBinary.TupleWriter(base: scratch.baseAddress!)
            return CopyBinary.appendValue(m, of: line, as: format, &out)
        }
    }

    /// The probe's parameters for `keys`: one array literal per key column.
    static func parameters(_ keys: [[String]], plan: LoadPlan) -> [String?] {
        plan.key.indices.map { column in arrayLiteral(keys.map { $0[column] }) }
    }

    /// The keys among `keys` that are in the table now (this transaction's rows included).
    static func present(_ keys: [[String]], sql: LoaderSQL, conn: PostgresConnection) throws -> Set<[String]> {
        guard !keys.isEmpty, let probe = sql.existingKeys else { return [] }
        var found: Set<[String]> = []
        _ = try conn.execute("SAVEPOINT probe")
        do {
            // The table's statistics predate this transaction's rows (often none, after a
            // TRUNCATE): the planner then scanned the whole table for each chunk's probe, which
            // grew quadratically (a 1,000,000-row file with duplicates: 60 s). The primary key
            // index answers it in milliseconds.
            _ = try conn.execute("SET LOCAL enable_seqscan = off")
            let result = try conn.execute(probe, parameters(keys, plan: sql.plan))
            for r in 0..<result.rowCount {
                if let ordinal = result.value(row: r, column: 0).flatMap({ Int($0) }), ordinal >= 1, ordinal <= keys.count {
                    found.insert(keys[ordinal - 1])
                }
            }
            _ = try conn.execute("RELEASE SAVEPOINT probe")
        } catch let error as PostgresError where error.category == .data {
            _ = try conn.execute("ROLLBACK TO SAVEPOINT probe")
        }
        _ = try conn.execute("RESET enable_seqscan")
        return found
    }

    /// The reject reason of a record whose key is already in the table, or (`earlierInFile`)
    /// whose key an earlier row of its own file loaded in this batch: `duplicate event_id
    /// (earlier in this file, line 12)`, the line of that row when known (`earlier in the
    /// stream` for records without a file, as validate says).
    static func duplicateReason(
        _ key: [String]?, plan: LoadPlan, earlierInFile: Bool = false, earlierLine: Int? = nil, withoutFile: Bool = false
    ) -> RejectReason {
        let place =
            !earlierInFile
            ? "already in the table"
            : withoutFile ? "earlier in the stream" : "earlier in this file" + (earlierLine.map { ", line \($0)" } ?? "")
        return RejectReason(
            field: plan.key.count == 1 ? plan.names[plan.key[0]] : nil, reason: "duplicate \(plan.keyName) (\(place))",
            value: key?.joined(separator: ", "))
    }
}
