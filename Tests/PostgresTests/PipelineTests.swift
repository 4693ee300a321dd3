import Postgres
import TestSupport
import Testing

@Suite struct PipelineTests {
    @Test func statementsRunInOrderEachWithItsParametersAndTheTransactionOutlivesTheCall() throws {
        try TestDatabase.with(applySetup: false) { database in
            let connection = try database.connect()
            try connection.execute("CREATE TABLE notes (body text)")
            let results = try connection.executePipelined([
                ("BEGIN", []),
                ("INSERT INTO notes VALUES ($1), ($2)", ["'); DROP TABLE notes; --", "b"]),
                ("SELECT count(*), min(body) FROM notes WHERE body <> $1", ["b"]),
            ])
            #expect(results.count == 3)
            #expect(results[2].rows == [["1", "'); DROP TABLE notes; --"]])
            // Still in the transaction the pipeline began: a rollback undoes the insert.
            try connection.execute("ROLLBACK")
            #expect(try connection.execute("SELECT count(*) FROM notes").rows == [["0"]])
        }
    }

    @Test func theFirstErrorIsThrownAndTheConnectionTakesTheNextCommand() throws {
        try TestDatabase.with(applySetup: false) { database in
            let connection = try database.connect()
            try connection.execute("CREATE TABLE notes (body text NOT NULL)")
            #expect {
                _ = try connection.executePipelined([
                    ("BEGIN", []),
                    ("INSERT INTO notes VALUES ($1)", [nil]),
                    ("INSERT INTO notes VALUES ($1)", ["never"]),
                ])
            } throws: { ($0 as? PostgresError)?.sqlstate == "23502" }
            try connection.execute("ROLLBACK")
            #expect(try connection.execute("SELECT count(*) FROM notes").rows == [["0"]])
        }
    }
}
