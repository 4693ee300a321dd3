import Postgres
import TestSupport
import Testing

@Suite struct ExecuteTests {
    @Test func valuesReachTheServerAsParametersVerbatim() throws {
        try TestDatabase.with(applySetup: false) { database in
            let connection = try database.connect()
            try connection.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text)")
            let hostile = [
                "'); DROP TABLE notes; --",
                "a; b; c",
                "$$ dollar $$",
                "$body$ x $body$",
                "$1",
                "O'Brien said \"hi\"",
                #"back\slash \' \\"#,
                "Zoë 東京 🛒",
                "",
            ]
            for value in hostile {
                let insert = try connection.execute("INSERT INTO notes (body) VALUES ($1)", [value])
                #expect(insert.affectedRows == 1)
            }
            let stored = try connection.execute("SELECT body FROM notes ORDER BY id")
            #expect(stored.rowCount == hostile.count)
            #expect(stored.columnCount == 1)
            #expect((0..<stored.rowCount).map { stored.value(row: $0, column: 0) } == hostile)
            #expect(try database.scalar("SELECT to_regclass('public.notes') IS NOT NULL") == "t")
        }
    }

    @Test func nilIsNull() throws {
        try TestDatabase.with(applySetup: false) { database in
            let connection = try database.connect()
            let result = try connection.execute(
                "SELECT $1::text IS NULL, $2::text IS NULL, $1::text, $2::text", [nil, "x"])
            #expect(result.rows == [["t", "f", nil, "x"]])
            try connection.execute("CREATE TABLE maybe (v integer)")
            let insert = try connection.execute("INSERT INTO maybe VALUES ($1), ($2), ($3)", [nil, "7", nil])
            #expect(insert.affectedRows == 3)
            #expect(try database.scalar("SELECT count(*) FROM maybe WHERE v IS NULL") == "2")
        }
    }

    @Test func serverFacts() throws {
        try TestDatabase.with(applySetup: false) { database in
            let connection = try database.connect()
            #expect(connection.serverVersion >= 150_000)
            #expect(!connection.isConnectionBad)
            #expect(connection.databaseName == database.name)
            #expect(connection.endpointDescription.contains("/\(database.name) user="))
            try connection.reset()
            #expect(try connection.execute("SELECT 41 + 1").value(row: 0, column: 0) == "42")
        }
    }

    @Test func aSecondStatementIsRefused() throws {
        try TestDatabase.with(applySetup: false) { database in
            let connection = try database.connect()
            try connection.execute("CREATE TABLE kept (v int)")
            // The extended protocol takes one statement: a smuggled second one is a syntax error.
            let error = try #require(throws: PostgresError.self) {
                try connection.execute("SELECT 1; DROP TABLE kept")
            }
            #expect(error.sqlstate == "42601")
            #expect(try database.scalar("SELECT to_regclass('public.kept') IS NOT NULL") == "t")
        }
    }
}

@Suite struct IdentifierTests {
    @Test(arguments: [
        ("events", #""events""#),
        ("public.events", #""public"."events""#),
        (#"we"ird"#, #""we""ird""#),
        ("a.b.c", #""a"."b.c""#),
        (#""my.schema".events"#, #""my.schema"."events""#),
        (#""Mixed""Case""#, #""Mixed""Case""#),
        ("Événements", #""Événements""#),
    ])
    func quoting(name: String, quoted: String) {
        #expect(quoteIdentifier(name) == quoted)
    }

    @Test func quotedNamesWorkAsTableNames() throws {
        try TestDatabase.with(applySetup: false) { database in
            let connection = try database.connect()
            for name in [#"we"ird "table"#, "public.Plain Name", #"public.x"y"#] {
                let table = quoteIdentifier(name)
                try connection.execute("CREATE TABLE \(table) (v text)")
                try connection.execute("INSERT INTO \(table) VALUES ($1)", [name])
                #expect(try connection.execute("SELECT v FROM \(table)").rows == [[name]])
            }
            let names = try database.query(
                "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace ORDER BY relname"
            ).map { $0[0] }
            #expect(names == ["Plain Name", #"we"ird "table"#, #"x"y"#])
        }
    }
}
