import CLibPQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension PostgresConnection {
    /// Runs `statements` in order, in one round trip (libpq's pipeline mode): all are sent, each
    /// with its text parameters, before any answer is read. Answers each statement's result.
    ///
    /// Each runs as a statement of its own, as with ``execute(_:_:)`` one after another: under
    /// READ COMMITTED each sees what was committed before it started, e.g. after a lock the one
    /// before it took. A `BEGIN` among them opens a transaction that outlives the call. The first
    /// error is thrown once every answer is read (the server skipped the statements after it),
    /// the connection ready for the next command (a `ROLLBACK`). No `COPY` here.
    public func executePipelined(_ statements: [(sql: String, params: [String?])]) throws -> [PostgresResult] {
        for statement in statements {
            if let index = statement.params.firstIndex(where: { $0?.utf8.contains(0) == true }) {
                throw PostgresError(
                    sqlstate: "22021",
                    message: "parameter $\(index + 1) contains a NUL byte, which text cannot hold")
            }
        }
        guard PQenterPipelineMode(conn) == 1 else {
            throw PostgresError(connection: conn, fallback: "could not enter pipeline mode")
        }
        defer { _ = PQexitPipelineMode(conn) }
        var sent = 0
        var firstError: PostgresError?
        for statement in statements {
            let queued = pipelineCStrings(statement.params) { values in
                PQsendQueryParams(conn, statement.sql, Int32(values.count), nil, values, nil, nil, 0)
            }
            guard queued == 1 else {
                firstError = PostgresError(connection: conn, fallback: "could not send a statement")
                break
            }
            sent += 1
        }
        // Sends the sync and flushes: the server answers up to it.
        guard PQpipelineSync(conn) == 1 else {
            throw firstError ?? PostgresError(connection: conn, fallback: "could not send the pipeline")
        }
        var results: [PostgresResult] = []
        // A NULL ends each statement's results; more than one per statement sent means the
        // sync will not come (a lost connection).
        var ends = 0
        reading: while true {
            guard let result = PQgetResult(conn) else {
                ends += 1
                if isConnectionBad || ends > sent {
                    throw firstError ?? PostgresError(connection: conn, fallback: "the pipeline's answers stopped")
                }
                continue
            }
            switch PQresultStatus(result) {
            case PGRES_PIPELINE_SYNC:
                PQclear(result)
                break reading
            case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
                results.append(PostgresResult(result))
            case PGRES_PIPELINE_ABORTED:
                PQclear(result)
            default:
                if firstError == nil { firstError = PostgresError(result: result, connection: conn) }
                PQclear(result)
            }
        }
        if let firstError { throw firstError }
        guard results.count == statements.count else {
            throw PostgresError(message: "the pipeline answered \(results.count) of \(statements.count) statements")
        }
        return results
    }
}

/// Lends `strings` to C as a `const char * const *` for the duration of `body`.
private func pipelineCStrings<R>(_ strings: [String?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    let copies: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0)! } }
    defer { for copy in copies { free(copy) } }
    return body(copies.map { $0.map { UnsafePointer($0) } })
}
