import Postgres
import TestSupport
import Testing

@Suite struct DeadServerDefaultsTests {
    @Test func addedWhenTheUserSetNone() throws {
        let conninfo = try ConnectionSettings.withDeadServerDefaults("host=db dbname=shop", environment: [:])
        #expect(
            conninfo
                == "host=db dbname=shop connect_timeout=10 keepalives=1 keepalives_idle=10 keepalives_interval=5 keepalives_count=3 tcp_user_timeout=20000"
        )
        #expect(try ConnectionSettings.withDeadServerDefaults("", environment: [:]).hasPrefix("connect_timeout=10 "))
    }

    @Test func whatTheUserWroteWins() throws {
        let conninfo = try ConnectionSettings.withDeadServerDefaults(
            "host=db keepalives_idle=60 tcp_user_timeout=0", environment: ["PGCONNECT_TIMEOUT": "3"])
        #expect(conninfo == "host=db keepalives_idle=60 tcp_user_timeout=0 keepalives=1 keepalives_interval=5 keepalives_count=3")
    }

    @Test func aURIGetsQueryParameters() throws {
        #expect(
            try ConnectionSettings.withDeadServerDefaults("postgresql://u@db/shop", environment: [:])
                == "postgresql://u@db/shop?connect_timeout=10&keepalives=1&keepalives_idle=10&keepalives_interval=5&keepalives_count=3&tcp_user_timeout=20000"
        )
        #expect(
            try ConnectionSettings.withDeadServerDefaults(
                "postgresql://u@db/shop?sslmode=disable&connect_timeout=4&keepalives=1&keepalives_idle=7&keepalives_interval=2&keepalives_count=9",
                environment: [:])
                == "postgresql://u@db/shop?sslmode=disable&connect_timeout=4&keepalives=1&keepalives_idle=7&keepalives_interval=2&keepalives_count=9&tcp_user_timeout=20000"
        )
    }

    /// libpq accepts every keyword (tcp_user_timeout needs libpq 12) and the server answers.
    @Test func aRealConnectionWithTheDefaults() throws {
        try TestDatabase.with { db in
            let connection = try PostgresConnection(conninfo: try ConnectionSettings.withDeadServerDefaults(db.conninfo))
            #expect(try connection.execute("SELECT 1").rows == [["1"]])
        }
    }
}
