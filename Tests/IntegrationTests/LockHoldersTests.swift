import Foundation
import Postgres
import TestSupport
import Testing

@testable import Loading

/// Which lock holder `load` ends after a lock wait ran out (issue 22): only a session of its own
/// run that it no longer has open and that waits for its client; never another pipeline's, never
/// one of its live sessions. On a real server, with sessions that hold a file's lock.
@Suite struct LockHoldersTests {
    /// A session named `name` that takes `file`'s advisory lock and stays idle in its transaction.
    static func holder(_ db: TestDatabase, name: String, file: String) throws -> PostgresConnection {
        let conn = try PostgresConnection(
            conninfo: db.conninfo, startup: try SessionStartup.parameters(conninfo: db.conninfo, applicationName: name))
        try conn.execute("BEGIN")
        try conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7263))", [file])
        return conn
    }

    @Test func onlyThisRunsClosedSessionIsEnded() throws {
        try TestDatabase.with { db in
            let orphan = try Self.holder(db, name: "ingest-load 1a2b3c4d.1.3 test", file: "a.csv")
            let live = try Self.holder(db, name: "ingest-load 1a2b3c4d.0.4 test", file: "b.csv")
            let other = try Self.holder(db, name: "ingest-load 99998888.1.1 other", file: "c.csv")
            let observer = try db.connect()
            func sessions() throws -> Set<String> {
                Set(
                    try db.query(
                        "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'ingest-load %' AND datname = current_database()"
                    ).compactMap {
                        $0[0]
                    })
            }
            #expect(try sessions().count == 3)
            let holders = LockHolders(
                ownPrefix: "ingest-load 1a2b3c4d.", live: ["ingest-load 1a2b3c4d.0.4 test"], logger: .init(label: "test"))
            let found = try holders.holders(observer, names: ["a.csv", "b.csv", "c.csv"])
            #expect(found.filter(\.holdsFileLock).count == 3)
            #expect(found.filter(holders.isOurOrphan).map(\.applicationName) == ["ingest-load 1a2b3c4d.1.3 test"])

            holders.report(observer, names: ["a.csv", "b.csv", "c.csv"])
            #expect(try eventually(timeout: 30) { try sessions() == ["ingest-load 1a2b3c4d.0.4 test", "ingest-load 99998888.1.1 other"] })
            #expect(throws: PostgresError.self) { try orphan.execute("SELECT 1") }
            #expect(try live.execute("SELECT 1").rows == [["1"]])
            #expect(try other.execute("SELECT 1").rows == [["1"]])
        }
    }
}
