import Ingest
import Postgres

extension Loader {
    /// Checks the contract against the table's catalog and takes the plan it gives: the
    /// table's own column types choose each column's binary format. Throws `ContractMismatch`
    /// (load exits 64) when they do not fit; runs once, on the reading thread before the first
    /// line is read (so before any commit thread reads the SQL or any tuple is made).
    ///
    /// A connection lost between connecting and reading the catalog (the server stopping at
    /// start-up) is retried like a failed connect, never a permanent error.
    func adoptCatalog() throws {
        var attempt = 0
        var catalog: TableCatalog?
        while catalog == nil {
            let conn = try sessions.connectedConnection(holding: false)
            do {
                catalog = try TableCatalog.read(conn, table: sessions.sql.table)
            } catch let error as PostgresError where error.category == .connection || error.category == .retry {
                attempt += 1
                config.metrics.databaseRetry()
                if let limit = config.maxRetries, attempt > limit { throw LoaderError.gaveUp(config.endpoint, error) }
                let wait = Backoff.database.delay(attempt: attempt)
                logger.warning("\(retryNote(error, endpoint: config.endpoint, connecting: true, wait: wait, attempt: attempt))")
                if Interrupts.received == 0 { Interrupts.sleep(milliseconds: Int(wait * 1000)) }
                // Nothing is held yet: a stop asked for now ends the wait at once.
                if Interrupts.received > 0 { throw LoaderError.interrupted(config.endpoint) }
            } catch let error as PostgresError {
                throw LoaderError.permanent("\(config.endpoint) (database \(conn.databaseName))", error)
            }
        }
        let table = TableName(config.table) ?? config.contract.table
        let plan = try LoadPlan.checked(config.contract, table: table, catalog: catalog!)
        sessions.sql = LoaderSQL(config: config, plan: plan)
        tuples.adopt(plan)
    }
}
