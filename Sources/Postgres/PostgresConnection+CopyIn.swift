import CLibPQ

/// The sending end of a `COPY … FROM STDIN`, lent to the body of ``PostgresConnection/copyIn(_:body:)``.
///
/// Chunk boundaries mean nothing to the server: send large buffers, rows may span chunks.
/// Do not keep it past the body.
public struct CopyIn {
    let conn: OpaquePointer

    public func send(_ bytes: UnsafeRawBufferPointer) throws {
        guard var base = bytes.baseAddress?.assumingMemoryBound(to: CChar.self) else { return }
        var left = bytes.count
        while left > 0 {
            // PQputCopyData takes an Int32 byte count.
            let chunk = min(left, 1 << 30)
            // 1 = queued; 0 only happens in non-blocking mode, which we never use; -1 = failed.
            guard PQputCopyData(conn, base, Int32(chunk)) == 1 else {
                throw PostgresError(connection: conn, fallback: "could not send COPY data")
            }
            base += chunk
            left -= chunk
        }
    }

    public func send(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try send($0) }
    }
}

extension PostgresConnection {
    /// Runs `COPY … FROM STDIN` and feeds it whatever `body` sends; returns the rows copied.
    ///
    /// If `body` throws, the COPY is ended with a failure message (the server rolls it back) and
    /// the body's error is rethrown once the connection is ready for the next command.
    /// Errors in the data (e.g. 23505) usually arrive only at the end, as ``PostgresError``.
    public func copyIn(_ sql: String, body: (CopyIn) throws -> Void) throws -> Int {
        // In non-blocking mode PQputCopyData may queue nothing and return 0; we never switch to it.
        precondition(PQisnonblocking(conn) == 0, "copyIn needs a connection in blocking mode")
        // PQexecParams, not PQexec: it refuses a second statement hiding in `sql`.
        guard let start = PQexecParams(conn, sql, 0, nil, nil, nil, nil, 0) else {
            throw PostgresError(connection: conn, fallback: "no result from server")
        }
        guard PQresultStatus(start) == PGRES_COPY_IN else {
            // An error, or a statement that is not COPY FROM STDIN: checked() cleans up and throws.
            _ = try checked(start)
            throw PostgresError(message: "not a COPY FROM STDIN statement")
        }
        PQclear(start)

        do {
            try body(CopyIn(conn: conn))
        } catch {
            // The reason stays with the caller: the server would write it to its log.
            _ = PQputCopyEnd(conn, "COPY aborted by client")
            _ = drainResults()
            throw error
        }

        guard PQputCopyEnd(conn, nil) == 1 else {
            let error = PostgresError(connection: conn, fallback: "could not end COPY")
            _ = drainResults()
            throw error
        }
        var copied = 0
        var firstError: PostgresError?
        while let result = PQgetResult(conn) {
            switch PQresultStatus(result) {
            case PGRES_COMMAND_OK:
                copied = PQcmdTuples(result).flatMap { Int(String(cString: $0)) } ?? 0
                PQclear(result)
            case PGRES_COPY_IN:
                // The end did not register; finish it rather than loop on COPY_IN forever.
                PQclear(result)
                if let error = drainResults() { firstError = firstError ?? error }
                firstError = firstError ?? PostgresError(connection: conn, fallback: "COPY did not end")
            default:
                if firstError == nil { firstError = PostgresError(result: result, connection: conn) }
                PQclear(result)
            }
        }
        if let firstError { throw firstError }
        return copied
    }
}
