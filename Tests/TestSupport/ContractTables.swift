import Ingest

/// SQL for a contract's table as the contract declares it (its types, NOT NULL, key) and its
/// dead-letter table, shaped like `ecommerce_bad_records`, both granted to the loader: what the
/// tests load other contracts into. Built from trusted contract files, identifiers quoted.
public func contractTablesSQL(_ contract: Contract) -> String {
    func quoted(_ name: String) -> String { "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }
    let columns = contract.columns.map { "\(quoted($0.name)) \($0.type)\($0.notNull ? " NOT NULL" : "")" }
    let key =
        contract.key.isEmpty ? "" : ", PRIMARY KEY (\(contract.key.map { quoted(contract.columns[$0].name) }.joined(separator: ", ")))"
    return """
        CREATE TABLE \(contract.table) (\(columns.joined(separator: ", "))\(key));
        CREATE TABLE \(contract.deadLetterTable) (LIKE public.ecommerce_bad_records INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        GRANT SELECT, INSERT ON \(contract.table), \(contract.deadLetterTable) TO ingest_loader;
        """
}
