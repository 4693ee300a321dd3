import Postgres
import TestSupport
import Testing

@Suite struct SessionStartupTests {
    @Test func theServersTimeoutsFollowTheUsersOptions() throws {
        let ours = "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 -c tcp_user_timeout=20000"
        let plain = try SessionStartup.parameters(conninfo: "host=db", applicationName: "ingest-load a.0.1 p", environment: [:])
        #expect(plain.map(\.keyword) == ["options", "application_name"])
        #expect(plain.map(\.value) == [ours, "ingest-load a.0.1 p"])
        let given = try SessionStartup.parameters(
            conninfo: "postgresql://u@db/shop?options=-c%20tcp_keepalives_idle%3D60", applicationName: "x", environment: [:])
        #expect(
            given[0].value == "-c tcp_keepalives_idle=60 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 -c tcp_user_timeout=20000")
        let fromEnvironment = try SessionStartup.parameters(
            conninfo: "", applicationName: "x", environment: ["PGOPTIONS": "-c search_path=shop"])
        #expect(fromEnvironment[0].value == "-c search_path=shop " + ours)
    }

    /// The server takes them: its side of the socket has the keepalives, and the session its name.
    @Test func aRealSessionHasThemOnTheServersSide() throws {
        try TestDatabase.with { db in
            let name = SessionStartup.applicationName(tool: "load", run: "0123abcd", session: 1, connection: 7, pipeline: "test")
            #expect(name == "ingest-load 0123abcd.1.7 test")
            let startup = try SessionStartup.parameters(conninfo: db.conninfo, applicationName: name)
            let connection = try PostgresConnection(conninfo: db.conninfo, startup: startup)
            let settings = try connection.execute(
                "SELECT current_setting('application_name'), current_setting('tcp_keepalives_idle'), current_setting('tcp_user_timeout'), current_database()"
            )
            #expect(settings.rows == [[name, "10", "20000", db.name]])
        }
    }
}
