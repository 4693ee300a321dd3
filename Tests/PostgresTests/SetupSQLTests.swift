import Postgres
import TestSupport
import Testing

@Suite struct SetupSQLTests {
    @Test func appliesTwice() throws {
        try TestDatabase.with { database in  // applied once already
            try database.applySetup()
            try database.applySetup()
            let tables = try database.query(
                """
                SELECT relname FROM pg_class
                WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY relname
                """
            ).map { $0[0] }
            #expect(tables == ["ecommerce_bad_records", "ecommerce_events", "ingest_checkpoints", "ingest_kafka_offsets"])
            let indexes = try database.query(
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname"
            ).map { $0[0] }
            #expect(indexes.contains("ecommerce_events_event_timestamp_idx"))
            #expect(indexes.contains("ingest_checkpoints_file_key"))
            #expect(indexes.contains("ingest_checkpoints_committed_at_idx"))
            #expect(indexes.contains("ecommerce_bad_records_source_file_idx"))
        }
    }

    @Test func aFileIsCheckpointedOnce() throws {
        try TestDatabase.with { database in
            let connection = try database.connect()
            // A plain INSERT, as load's: the index refuses a second checkpoint of one file.
            let insert = """
                INSERT INTO ingest_checkpoints (source_file, file_bytes, file_sha256, rows_loaded, rows_rejected)
                VALUES ($1, $2, $3, 10, 0)
                """
            let file: [String?] = ["batch_0001.csv", "2048", String(repeating: "ab", count: 32)]
            #expect(try connection.execute(insert, file).affectedRows == 1)
            let again = try #require(throws: PostgresError.self) { try connection.execute(insert, file) }
            #expect(again.sqlstate == "23505")
            // Batches without provenance never collide.
            #expect(try connection.execute(insert, [nil, nil, nil]).affectedRows == 1)
            #expect(try connection.execute(insert, [nil, nil, nil]).affectedRows == 1)
            // A file checkpoint without size or hash would make uniqueness meaningless.
            let error = try #require(throws: PostgresError.self) {
                try connection.execute(insert, ["batch_0002.csv", nil, nil])
            }
            #expect(error.sqlstate == "23514")
        }
    }

    /// A database set up before contracts: its checkpoints become the events table's, and the
    /// unique index is made again with target_table, so a file may be checkpointed once per table.
    @Test func checkpointsFromBeforeContractsBecomeTheEventsTables() throws {
        try TestDatabase.with { database in
            let connection = try database.connect()
            try connection.executeScript(
                """
                DROP INDEX ingest_checkpoints_file_key;
                ALTER TABLE ingest_checkpoints DROP COLUMN target_table;
                CREATE UNIQUE INDEX ingest_checkpoints_file_key ON ingest_checkpoints (source_file, file_bytes, file_sha256)
                    WHERE source_file IS NOT NULL;
                INSERT INTO ingest_checkpoints (source_file, file_bytes, file_sha256) VALUES ('old.csv', 1, 'aa');
                """)
            try database.applySetup()
            try database.applySetup()
            #expect(
                try database.scalar("SELECT target_table FROM ingest_checkpoints WHERE source_file = 'old.csv'")
                    == "public.ecommerce_events")
            let definition = try database.scalar("SELECT indexdef FROM pg_indexes WHERE indexname = 'ingest_checkpoints_file_key'")
            #expect(definition?.contains("(target_table, source_file, file_bytes, file_sha256)") == true, "\(definition ?? "none")")
            let insert =
                "INSERT INTO ingest_checkpoints (target_table, source_file, file_bytes, file_sha256) VALUES ($1, 'old.csv', 1, 'aa')"
            #expect(try connection.execute(insert, ["public.orders"]).affectedRows == 1)
            let again = try #require(throws: PostgresError.self) { try connection.execute(insert, ["public.orders"]) }
            #expect(again.sqlstate == "23505")
        }
    }

    @Test func eventRulesAreEnforced() throws {
        try TestDatabase.with { database in
            let connection = try database.connect()
            let insert = """
                INSERT INTO ecommerce_events (event_id, user_id, product_id, event_type, price, event_timestamp)
                VALUES ($1, $2, $3, $4, $5, $6)
                """
            let good: [String?] = ["6f1c1d2e-0000-4000-8000-000000000001", "1", "2", "purchase", "19.99", "2024-05-01T10:00:00Z"]
            #expect(try connection.execute(insert, good).affectedRows == 1)
            var noUser = good
            noUser[0] = "6f1c1d2e-0000-4000-8000-000000000002"
            noUser[1] = nil
            let missing = try #require(throws: PostgresError.self) { try connection.execute(insert, noUser) }
            #expect(missing.sqlstate == "23502")
            // The event types are validate's (--event-types): the table has no list to disagree with,
            // and the setup drops the CHECK that earlier versions created.
            _ = try connection.execute(
                """
                ALTER TABLE ecommerce_events ADD CONSTRAINT ecommerce_events_event_type_check
                    CHECK (event_type IN ('view', 'purchase'))
                """)
            try database.applySetup()
            var otherType = good
            otherType[0] = "6f1c1d2e-0000-4000-8000-000000000003"
            otherType[3] = "add_to_cart"
            #expect(try connection.execute(insert, otherType).affectedRows == 1)
            let duplicate = try #require(throws: PostgresError.self) { try connection.execute(insert, good) }
            #expect(duplicate.sqlstate == "23505")
            #expect(try database.scalar("SELECT ingestion_timestamp IS NOT NULL FROM ecommerce_events") == "t")
        }
    }

    @Test func loaderRoleMayOnlyReadAndInsert() throws {
        try TestDatabase.with { database in
            let connection = try database.connect()
            try connection.execute("SET ROLE ingest_loader")
            #expect(try connection.execute("SELECT current_user").value(row: 0, column: 0) == "ingest_loader")

            let insert = try connection.execute(
                """
                INSERT INTO ecommerce_events (event_id, user_id, product_id, event_type, price, event_timestamp)
                VALUES ($1, 1, 2, 'view', NULL, now())
                """, ["6f1c1d2e-0000-4000-8000-00000000000a"])
            #expect(insert.affectedRows == 1)
            #expect(try connection.execute("SELECT count(*) FROM ecommerce_events").value(row: 0, column: 0) == "1")
            // bigserial defaults need USAGE on the sequences; the foreign key needs nothing more.
            let checkpoint = try connection.execute(
                "INSERT INTO ingest_checkpoints (rows_loaded) VALUES (1) RETURNING id"
            ).value(row: 0, column: 0)
            try connection.execute(
                """
                INSERT INTO ecommerce_bad_records (source_file, line_number, raw, reasons, checkpoint_id)
                VALUES ($1, 3, $2, $3::jsonb, $4)
                """, ["f.csv", #"{"price":"-1"}"#, #"[{"field":"price","reason":"must be > 0","value":"-1"}]"#, checkpoint])

            let forbidden = [
                "DELETE FROM ecommerce_events",
                "UPDATE ecommerce_events SET user_id = 2",
                "TRUNCATE ecommerce_events",
                "DROP TABLE ecommerce_events",
                "ALTER TABLE ecommerce_events ADD COLUMN note text",
                "CREATE TABLE public.sneaky (v int)",
                "DELETE FROM ingest_checkpoints",
                "UPDATE ecommerce_bad_records SET raw = ''",
                // Offsets move forward through load's UPDATE of next_offset only.
                "DELETE FROM ingest_kafka_offsets",
                "UPDATE ingest_kafka_offsets SET topic = 'other'",
            ]
            for sql in forbidden {
                let error = try #require(throws: PostgresError.self, "\(sql)") { try connection.execute(sql) }
                #expect(error.sqlstate == "42501", "\(sql): \(error)")
                #expect(error.category == .permanent)
            }
            try connection.execute("RESET ROLE")
            #expect(try database.scalar("SELECT count(*) FROM ecommerce_events") == "1")
        }
    }
}
