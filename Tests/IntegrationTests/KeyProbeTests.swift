import Foundation
import Ingest
import Postgres
import TestSupport
import Testing

@testable import Loading

/// The isolation path's probe: which records' keys (composite, of several types) are in the
/// table. Tested on its own, since the bisection after it would find the same duplicates (one
/// 23505 at a time), and a probe that found nothing would go unnoticed there.
@Suite struct KeyProbeTests {
    @Test func findsTheKeysInTheTableByEveryKeyColumn() throws {
        try TestDatabase.with(applySetup: false) { database in
            let connection = try database.connect()
            try connection.execute(
                "CREATE TABLE readings (sensor text, at timestamptz, seq numeric(6,2), value real, PRIMARY KEY (sensor, at, seq))")
            try connection.execute(
                "INSERT INTO readings VALUES ('a', '2024-02-29 12:00:00.5+00', 1.50, 1), ('b', '1969-12-31 23:59:59.999999+00', 2, 2)")
            let contract = Contract(
                table: TableName(schema: nil, name: "readings"),
                columns: [
                    ContractColumn(name: "sensor", type: .text), ContractColumn(name: "at", type: .timestamptz),
                    ContractColumn(name: "seq", type: .numeric(precision: 6, scale: 2)), ContractColumn(name: "value", type: .real),
                ], key: [0, 1, 2])
            let plan = LoadPlan(contract: contract)
            var config = LoaderConfiguration(conninfo: database.conninfo, endpoint: "test")
            config.table = "readings"
            let sql = LoaderSQL(config: config, plan: plan)
            let records = [
                #"{"sensor":"a","at":"2024-02-29T12:00:00.500Z","seq":"1.50","value":9}"#,  // in the table
                #"{"sensor":"a","at":"2024-02-29T12:00:00.500Z","seq":"1.51","value":9}"#,  // another seq
                #"{"sensor":"b","at":"1969-12-31T23:59:59.999999Z","seq":"2.00","value":9}"#,  // in the table
                #"{"sensor":"b","at":"1970-01-01T00:00:00.000Z","seq":"2.00","value":9}"#,  // another instant
                #"{"sensor":"c","at":"not a time","seq":"2.00","value":9}"#,  // not canonical: not probed
            ]
            var decoder = LineDecoder()
            var keys: [[String]] = []
            for record in records {
                try Array(record.utf8).withUnsafeBytes { raw in
                    if let key = KeyProbe.key(of: try decoder.decode(raw), plan: plan) { keys.append(key) }
                }
            }
            #expect(keys.count == 4)
            try connection.execute("BEGIN")
            let found = try KeyProbe.present(keys, sql: sql, conn: connection)
            try connection.execute("ROLLBACK")
            #expect(found == [keys[0], keys[2]])
            #expect(
                KeyProbe.duplicateReason(keys[0], plan: plan).description.hasPrefix(
                    "duplicate key (sensor, at, seq) (already in the table)"))
        }
    }
}
