import Foundation
import TestSupport
import Testing

@testable import Postgres

/// A TCP endpoint on the test server: password authentication only happens over TCP in the
/// cluster `bin/test` starts (local socket: trust; host: scram-sha-256).
func tcpServer() -> (host: String, port: String) {
    let environment = ProcessInfo.processInfo.environment
    let host = environment["PGHOST"].flatMap { $0.hasPrefix("/") || $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
    return (host, environment["PGPORT"] ?? "5432")
}

/// A throwaway login role with a password, dropped afterwards.
func withLoginRole<R>(password: String, _ body: (String) throws -> R) throws -> R {
    let role = "ingest_test_role_\(String(UInt64.random(in: .min ... .max), radix: 16))"
    let admin = try PostgresConnection(conninfo: "dbname=postgres")
    // CREATE ROLE takes no parameters: quote the literal the way the server does.
    let literal = try admin.execute("SELECT quote_literal($1)", [password]).value(row: 0, column: 0)!
    try admin.execute("CREATE ROLE \(quoteIdentifier(role)) LOGIN PASSWORD \(literal)")
    defer { _ = try? admin.execute("DROP ROLE IF EXISTS \(quoteIdentifier(role))") }
    return try body(role)
}

@Suite struct ErrorCategoryTests {
    @Test(arguments: [
        ("08006", PostgresError.Category.connection), ("08001", .connection), ("57P01", .connection),
        ("57P02", .connection), ("57P03", .connection), ("53300", .connection),
        ("22P02", .data), ("22003", .data), ("23505", .data), ("23503", .data),
        ("40001", .retry), ("40P01", .retry), ("53100", .retry), ("53200", .retry),
        ("28P01", .permanent), ("28000", .permanent), ("42P01", .permanent), ("42501", .permanent),
        ("42601", .permanent), ("3D000", .permanent), ("53400", .permanent), ("XX000", .permanent),
    ])
    func bySQLSTATE(sqlstate: String, category: PostgresError.Category) {
        #expect(PostgresError(sqlstate: sqlstate, message: "m").category == category)
    }

    @Test func withoutSQLSTATE() {
        #expect(PostgresError(message: "server closed the connection", connectionLost: true).category == .connection)
        #expect(PostgresError(message: "misuse", connectionLost: false).category == .permanent)
    }

    @Test func descriptionIsOneLine() {
        let error = PostgresError(
            sqlstate: "23505", severity: "ERROR",
            message: #"duplicate key value violates unique constraint "x""#,
            detail: "Key (id)=(1) already exists.", hint: "Try\nanother key.")
        #expect(
            error.description
                == #"ERROR 23505: duplicate key value violates unique constraint "x" (detail: Key (id)=(1) already exists.) (hint: Try another key.)"#
        )
    }

    @Test func parsesVerboseConnectionMessages() {
        let text = """
            connection to server at "127.0.0.1", port 5432 failed: FATAL:  28P01: password authentication failed for user "loader"
            LOCATION:  auth_failed, auth.c:326

            """
        let error = PostgresError(libpqMessage: text, connectionLost: true)
        #expect(error.sqlstate == "28P01")
        #expect(error.severity == "FATAL")
        #expect(error.category == .permanent)
        #expect(
            error.description
                == #"FATAL 28P01: connection to server at "127.0.0.1", port 5432 failed: password authentication failed for user "loader""#)

        let refused = PostgresError(
            libpqMessage: """
                connection to server at "127.0.0.1", port 1 failed: Connection refused
                \tIs the server running on that host and accepting TCP/IP connections?

                """, connectionLost: true)
        #expect(refused.sqlstate == nil)
        #expect(refused.category == .connection)
        #expect(!refused.description.contains("\n"))
    }
}

@Suite struct ServerErrorTests {
    @Test func undefinedTableIsPermanent() throws {
        try TestDatabase.with(applySetup: false) { database in
            let connection = try database.connect()
            let error = try #require(throws: PostgresError.self) {
                try connection.execute("SELECT * FROM no_such_table WHERE id = $1", ["1"])
            }
            #expect(error.sqlstate == "42P01")
            #expect(error.category == .permanent)
            #expect(error.severity == "ERROR")
            #expect(error.description.hasPrefix(#"ERROR 42P01: relation "no_such_table" does not exist"#))
            #expect(try connection.execute("SELECT 1").rowCount == 1)
        }
    }

    @Test func unknownDatabaseIsPermanent() throws {
        try TestDatabase.requireServer()
        let error = try #require(throws: PostgresError.self) {
            _ = try PostgresConnection(conninfo: "dbname=ingest_test_no_such_database")
        }
        #expect(error.sqlstate == "3D000")
        #expect(error.category == .permanent)
        #expect(error.description.contains(#"database "ingest_test_no_such_database" does not exist"#))
        #expect(!error.description.contains("\n"))
    }

    @Test func wrongPasswordIsPermanentAndNeverShown() throws {
        try TestDatabase.requireServer()
        let server = tcpServer()
        try withLoginRole(password: "right-pw") { role in
            let base = "host=\(server.host) port=\(server.port) dbname=postgres user=\(role)"
            // The right password works, so the failure below is about the password.
            let connection = try PostgresConnection(conninfo: base + " password=right-pw")
            #expect(connection.user == role)

            let error = try #require(throws: PostgresError.self) {
                _ = try PostgresConnection(conninfo: base + " password=Wr0ngSecret")
            }
            #expect(error.sqlstate == "28P01")
            #expect(error.category == .permanent)
            #expect(!error.description.contains("Wr0ngSecret"))
            #expect(!error.description.contains("password=") && !error.description.contains("\n"))
        }
    }

    @Test func unreachablePortIsAConnectionError() throws {
        let error = try #require(throws: PostgresError.self) {
            _ = try PostgresConnection(conninfo: "host=127.0.0.1 port=1 connect_timeout=5 password=hunter2")
        }
        #expect(error.sqlstate == nil)
        #expect(error.category == .connection)
        #expect(error.description.contains("127.0.0.1"))
        #expect(!error.description.contains("hunter2"))
        #expect(!error.description.contains("\n"))
    }

    @Test func nologinRoleIsPermanent() throws {
        try TestDatabase.with { _ in  // creates ingest_loader, which is NOLOGIN
            let error = try #require(throws: PostgresError.self) {
                _ = try PostgresConnection(conninfo: "dbname=postgres user=ingest_loader")
            }
            // 28000 (may not log in) over the socket; 28P01 over TCP, where scram fails first.
            #expect(error.sqlstate?.hasPrefix("28") == true)
            #expect(error.category == .permanent)
        }
    }

    @Test func aTerminatedSessionIsAConnectionErrorAndResetRecovers() throws {
        try TestDatabase.with(applySetup: false) { database in
            let victim = try database.connect()
            let pid = try victim.execute("SELECT pg_backend_pid()").value(row: 0, column: 0)
            let admin = try database.connect()
            try admin.execute("SELECT pg_terminate_backend($1::int, 5000)", [pid])
            let error = try #require(throws: PostgresError.self) { try victim.execute("SELECT 1") }
            #expect(error.category == .connection, "\(error)")
            #expect(victim.isConnectionBad)
            try victim.reset()
            #expect(!victim.isConnectionBad)
            #expect(try victim.execute("SELECT 1").rowCount == 1)
        }
    }

    @Test func anUnparseableConninfoIsNotRepeated() throws {
        for conninfo in ["host=x password=s3 cretpart", "postgresql://u:cretpart@h/db?nosuchoption=cretpart"] {
            let error = try #require(throws: PostgresError.self) {
                _ = try PostgresConnection(conninfo: conninfo)
            }
            #expect(!error.description.contains("cretpart"))
            #expect(error.category == .permanent)
            let settingsError = try #require(throws: PostgresError.self) {
                _ = try ConnectionSettings(db: conninfo, environment: [:])
            }
            #expect(!settingsError.description.contains("cretpart"))
        }
    }

    @Test func aNulByteIsADataErrorNotATruncation() throws {
        try TestDatabase.with(applySetup: false) { database in
            let connection = try database.connect()
            let error = try #require(throws: PostgresError.self) {
                try connection.execute("SELECT $1::text, $2::text", ["fine", "cut\0here"])
            }
            #expect(error.sqlstate == "22021")
            #expect(error.category == .data)
            #expect(error.message.contains("$2"))
        }
    }
}
