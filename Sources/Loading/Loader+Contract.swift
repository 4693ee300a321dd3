import Ingest
import Postgres

extension Loader {
    /// Checks the contract against the table's catalog and takes the plan it gives: the
    /// table's own column types choose each column's binary format. Throws `ContractMismatch`
    /// (load exits 64) when they do not fit; runs once, before the first line is read.
    func adoptCatalog(_ conn: PostgresConnection) throws {
        let catalog: TableCatalog
        do {
            catalog = try TableCatalog.read(conn, table: sql.table)
        } catch let error as PostgresError {
            throw LoaderError.permanent("\(config.endpoint) (database \(conn.databaseName))", error)
        }
        let table = TableName(config.table) ?? config.contract.table
        let plan = try LoadPlan.checked(config.contract, table: table, catalog: catalog)
        sql = LoaderSQL(config: config, plan: plan)
        tuples.adopt(plan)
    }
}
