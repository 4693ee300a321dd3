import CLibPQ

/// A successful result (`PGresult*`), freed when released. Values are in text format.
public final class PostgresResult {
    let result: OpaquePointer

    init(_ result: OpaquePointer) {
        self.result = result
    }

    deinit {
        PQclear(result)
    }

    public var rowCount: Int { Int(PQntuples(result)) }
    public var columnCount: Int { Int(PQnfields(result)) }

    /// The column's name as the server reported it.
    public func columnName(_ column: Int) -> String? {
        PQfname(result, Int32(column)).map { String(cString: $0) }
    }

    /// The value at `row`, `column` as text; nil for SQL NULL.
    public func value(row: Int, column: Int) -> String? {
        precondition(
            row >= 0 && row < rowCount && column >= 0 && column < columnCount,
            "row \(row), column \(column) outside a \(rowCount)×\(columnCount) result")
        if PQgetisnull(result, Int32(row), Int32(column)) == 1 { return nil }
        return String(cString: PQgetvalue(result, Int32(row), Int32(column)))
    }

    /// Rows touched by INSERT/UPDATE/DELETE/COPY/…, from `PQcmdTuples`; 0 when the command reports none.
    public var affectedRows: Int {
        PQcmdTuples(result).flatMap { Int(String(cString: $0)) } ?? 0
    }

    /// All rows, for small results.
    public var rows: [[String?]] {
        (0..<rowCount).map { row in (0..<columnCount).map { value(row: row, column: $0) } }
    }
}
