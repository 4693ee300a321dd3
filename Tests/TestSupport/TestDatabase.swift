import Foundation
import Postgres

/// A fresh database with the project's schema, on the server the `PG*` variables name.
///
/// `bin/test` starts a private server and sets `PGHOST`, `PGPORT`, `PGUSER` (and `PGPASSWORD` if
/// needed); libpq reads them, so the conninfo here only names the database. Each call to
/// ``create(applySetup:)`` makes its own uniquely named database, so tests running in parallel in
/// one process never share tables.
public struct TestDatabase: Sendable {
    /// The generated database name, unquoted.
    public let name: String
    /// `dbname='…'`: host, port and user come from the `PG*` variables, for this process and
    /// for any child process that inherits its environment.
    public let conninfo: String

    /// The package root, found from this file's place in the source tree.
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // TestSupport
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()

    public static var setupSQLPath: String {
        packageRoot.appendingPathComponent("sql/postgres_setup.sql").path
    }

    /// Creates a database and, unless told not to, applies `sql/postgres_setup.sql` to it.
    public static func create(applySetup: Bool = true) throws -> TestDatabase {
        try requireServer()
        let name = "ingest_test_\(getpid())_\(String(UInt64.random(in: .min ... .max), radix: 16))"
        let maintenance = try PostgresConnection(conninfo: "dbname=postgres")
        // CREATE DATABASE fails with 55006 while another session sits in the template; rare, brief.
        var attempt = 0
        while true {
            do {
                try maintenance.execute("CREATE DATABASE \(quoteIdentifier(name))")
                break
            } catch let error as PostgresError where error.sqlstate == "55006" && attempt < 20 {
                attempt += 1
                usleep(100_000)
            }
        }
        let database = TestDatabase(
            name: name, conninfo: "dbname=\(ConnectionSettings.quoteConninfoValue(name))")
        if applySetup {
            do {
                try database.applySetup()
            } catch {
                try? database.drop()
                throw error
            }
        }
        return database
    }

    /// Creates a database, runs `body` with it, and drops it whether or not `body` throws.
    public static func with<R>(applySetup: Bool = true, _ body: (TestDatabase) throws -> R) throws -> R {
        let database = try create(applySetup: applySetup)
        defer { try? database.drop() }
        return try body(database)
    }

    /// Async variant of ``with(applySetup:_:)``.
    public static func with<R>(
        applySetup: Bool = true, _ body: (TestDatabase) async throws -> R
    ) async throws -> R {
        let database = try create(applySetup: applySetup)
        defer { try? database.drop() }
        return try await body(database)
    }

    /// Fails, rather than skips, when there is no server: a green run must mean the database
    /// code was exercised.
    public static func requireServer() throws {
        guard let host = ProcessInfo.processInfo.environment["PGHOST"], !host.isEmpty else {
            throw TestDatabaseError(
                "no PostgreSQL server for tests: run bin/test, or set PGHOST/PGPORT/PGUSER")
        }
    }

    /// Applies `sql/postgres_setup.sql` (again): it must be idempotent.
    public func applySetup() throws {
        let script = try String(contentsOfFile: Self.setupSQLPath, encoding: .utf8)
        try connect().executeScript(script)
    }

    /// A new connection to this database, as the server's default user.
    public func connect() throws -> PostgresConnection {
        try PostgresConnection(conninfo: conninfo)
    }

    /// Runs one statement on a new connection and returns all its rows as text.
    @discardableResult
    public func query(_ sql: String, _ params: [String?] = []) throws -> [[String?]] {
        try connect().execute(sql, params).rows
    }

    /// The first column of the first row, nil for NULL or no rows.
    public func scalar(_ sql: String, _ params: [String?] = []) throws -> String? {
        try query(sql, params).first?.first ?? nil
    }

    /// Drops the database, disconnecting anyone still in it.
    public func drop() throws {
        let maintenance = try PostgresConnection(conninfo: "dbname=postgres")
        try maintenance.execute("DROP DATABASE IF EXISTS \(quoteIdentifier(name)) WITH (FORCE)")
    }
}

public struct TestDatabaseError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
