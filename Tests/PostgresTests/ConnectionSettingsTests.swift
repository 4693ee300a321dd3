import Foundation
import Postgres
import TestSupport
import Testing

@Suite struct ConnectionSettingsTests {
    let seeds = [
        "POSTGRES_HOST": "seed-host", "POSTGRES_PORT": "5433", "POSTGRES_DB": "ecommerce",
        "POSTGRES_USER": "loader", "POSTGRES_PASSWORD": "s3cret",
    ]

    @Test func explicitDbWinsAndIsPassedAsIs() throws {
        var environment = seeds
        environment["PGHOST"] = "pg-host"
        for db in ["host=db-host dbname=shop password=s3cret", "postgresql://u:s3cret@db-host:6000/shop"] {
            let settings = try ConnectionSettings(db: db, environment: environment)
            #expect(settings.conninfo == db)
            #expect(!settings.redactedDescription.contains("s3cret"))
            #expect(settings.redactedDescription.contains("host=db-host"))
            #expect(settings.redactedDescription.contains("dbname=shop"))
        }
    }

    @Test func pgVariablesBeatSeedKeys() throws {
        let environment = seeds.merging(["PGHOST": "pg-host", "PGPASSWORD": "pg-secret"]) { $1 }
        let settings = try ConnectionSettings(environment: environment)
        // libpq reads PGHOST and PGPASSWORD itself; the seed values for those keys are dropped.
        #expect(settings.conninfo == "port='5433' dbname='ecommerce' user='loader'")
        #expect(settings.redactedDescription == "host=pg-host port=5433 dbname=ecommerce user=loader")
    }

    @Test func seedKeysAloneAndRedaction() throws {
        let settings = try ConnectionSettings(environment: seeds)
        #expect(settings.conninfo == "host='seed-host' port='5433' dbname='ecommerce' user='loader' password='s3cret'")
        #expect(settings.redactedDescription == "host=seed-host port=5433 dbname=ecommerce user=loader")
    }

    @Test func nothingSetMeansLibpqDefaults() throws {
        let settings = try ConnectionSettings(environment: [:])
        #expect(settings.conninfo == "")
    }

    @Test func envFileFillsWhatTheEnvironmentLacks() throws {
        let file = FileManager.default.temporaryDirectory
            .appendingPathComponent("ingest-test-\(UUID().uuidString).env")
        try """
        # seed settings
        POSTGRES_HOST=file-host
        export POSTGRES_PORT=5434   # trailing comment
        POSTGRES_USER='file-user'
        POSTGRES_PASSWORD="it's a \\ p#ss"
        UNRELATED=1
        """.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }

        let settings = try ConnectionSettings(
            environment: ["POSTGRES_USER": "env-user", "PGPORT": "7000"], envFile: file.path)
        #expect(settings.conninfo == #"host='file-host' user='env-user' password='it\'s a \\ p#ss'"#)
        #expect(settings.redactedDescription == "host=file-host port=7000 user=env-user")
        #expect(throws: PostgresError.self) {
            _ = try ConnectionSettings(environment: [:], envFile: file.path + ".missing")
        }
    }

    @Test func quoting() {
        #expect(ConnectionSettings.quoteConninfoValue(#"a'b\c d"#) == #"'a\'b\\c d'"#)
        #expect(ConnectionSettings.quoteConninfoValue("") == "''")
    }

    @Test func seedSettingsConnect() throws {
        try TestDatabase.with(applySetup: false) { database in
            // PGHOST/PGPORT/PGUSER come from the real environment through libpq; the seed names the database.
            let seeded = try ConnectionSettings(environment: ["POSTGRES_DB": database.name])
            #expect(try PostgresConnection(conninfo: seeded.conninfo).databaseName == database.name)
            // --db beats the seed.
            let explicit = try ConnectionSettings(db: "dbname=postgres", environment: ["POSTGRES_DB": database.name])
            #expect(try PostgresConnection(conninfo: explicit.conninfo).databaseName == "postgres")
        }
    }

    @Test func awkwardPasswordSurvivesConninfoQuoting() throws {
        try TestDatabase.requireServer()
        let server = tcpServer()
        let password = #"it's \ "quoted" p@ss word"#
        try withLoginRole(password: password) { role in
            let settings = try ConnectionSettings(environment: [
                "POSTGRES_HOST": server.host, "POSTGRES_PORT": server.port, "POSTGRES_DB": "postgres",
                "POSTGRES_USER": role, "POSTGRES_PASSWORD": password,
            ])
            #expect(!settings.redactedDescription.contains("p@ss"))
            let connection = try PostgresConnection(conninfo: settings.conninfo)
            #expect(connection.user == role)
            #expect(connection.port == server.port)
        }
    }
}
