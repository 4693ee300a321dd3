import Foundation
import Ingest
import Postgres
import TestSupport
import Testing

@testable import Loading

/// Binary tuples made by `load` must store exactly what the text path stores.
@Suite struct CopyBinaryTests {
    /// The default contract's plan, the table's types taken to be the contract's.
    static let plan = LoadPlan(contract: .ecommerceEvents)
    static let records: [String] = [
        #"{"event_id":"63cbe1e4-5932-4dd7-844c-3cd7f43c661c","user_id":45245,"product_id":1248,"event_type":"view","price":null,"event_timestamp":"2026-12-01T03:05:11.442Z"}"#,
        #"{"event_id":"61CC42D4-094B-4C40-8EF7-4AA7DD7F4AEC","user_id":1,"product_id":2147483647,"event_type":"purchase","price":"160.45","event_timestamp":"2024-02-29T23:59:59.999999Z"}"#,
        #"{"event_id":"00000000-0000-0000-0000-000000000001","user_id":-7,"product_id":0,"event_type":"purchase","price":"0.10","event_timestamp":"1999-12-31T23:59:59.5Z"}"#,
        #"{"event_id":"00000000-0000-0000-0000-000000000002","user_id":3,"product_id":4,"event_type":"purchase","price":"12345678.99","event_timestamp":"2000-01-01T00:00:00Z"}"#,
        #"{"event_id":"00000000-0000-0000-0000-000000000003","user_id":3,"product_id":4,"event_type":"purchase","price":"100","event_timestamp":"2038-01-19T03:14:08.1Z"}"#,
        #"{"event_id":"00000000-0000-0000-0000-000000000004","user_id":3,"product_id":4,"event_type":"purchase","price":0.005,"event_timestamp":"1970-01-01T00:00:00.000001Z"}"#,
        #"{"event_id":"00000000-0000-0000-0000-000000000005","user_id":3,"product_id":4,"event_type":"purchase","price":"-1.5","event_timestamp":"2026-06-30T12:00:00.25Z"}"#,
        #"{"event_id":"00000000-0000-0000-0000-000000000006","user_id":3,"product_id":4,"event_type":"vi\u00e9w","price":"0.00","event_timestamp":"2026-06-30T12:00:00Z"}"#,
        // Hex letters of both cases in every group (the uuid is decoded eight digits at a time).
        #"{"event_id":"A1b2C3d4-E5f6-4a7B-aBcD-0123456789eF","user_id":3,"product_id":4,"event_type":"view","price":"1.00","event_timestamp":"2026-06-30T12:00:00Z"}"#,
        #"{"event_id":"ffffffff-FFFF-ffff-FFFF-ffffffffffff","user_id":3,"product_id":4,"event_type":"view","price":"1.00","event_timestamp":"2026-06-30T12:00:00Z"}"#,
    ]

    @Test func binaryTuplesStoreWhatTheTextPathStores() throws {
        try TestDatabase.with(applySetup: false) { database in
            let connection = try database.connect()
            for table in ["by_text", "by_binary"] {
                try connection.execute(
                    "CREATE TABLE \(table) (event_id uuid PRIMARY KEY, user_id integer, product_id integer, event_type text, price numeric(10,2), event_timestamp timestamptz)"
                )
            }
            var text: [UInt8] = []
            var binary = CopyBinary.header
            var decoder = LineDecoder()
            for record in Self.records {
                try Array(record.utf8).withUnsafeBytes { raw in
                    let line = try decoder.decode(raw)
                    CopyText.appendRow(from: line, plan: Self.plan, into: &text)
                    #expect(CopyBinary.appendRow(from: line, plan: Self.plan, into: &binary), "\(record)")
                }
            }
            binary += CopyBinary.trailer
            let columns = Self.plan.names.joined(separator: ", ")
            _ = try connection.copyIn("COPY by_text (\(columns)) FROM STDIN") { try $0.send(text) }
            _ = try connection.copyIn("COPY by_binary (\(columns)) FROM STDIN WITH (FORMAT binary)") { try $0.send(binary) }
            let differences = try database.scalar(
                "SELECT count(*) FROM ((TABLE by_text EXCEPT TABLE by_binary) UNION ALL (TABLE by_binary EXCEPT TABLE by_text)) d")
            #expect(try database.scalar("SELECT count(*) FROM by_binary") == String(Self.records.count))
            #expect(differences == "0")
        }
    }

    @Test(arguments: [
        #"{"event_id":"00000000-0000-0000-0000-00000000000g","user_id":1,"product_id":2,"event_type":"view","price":null,"event_timestamp":"2026-12-01T03:05:11Z"}"#,
        #"{"event_id":"0000000:-0000-0000-0000-000000000001","user_id":1,"product_id":2,"event_type":"view","price":null,"event_timestamp":"2026-12-01T03:05:11Z"}"#,
        #"{"event_id":"00000000-0000-0000-0\u00e900-00000000001","user_id":1,"product_id":2,"event_type":"view","price":null,"event_timestamp":"2026-12-01T03:05:11Z"}"#,
        #"{"event_id":"not-a-uuid","user_id":1,"product_id":2,"event_type":"view","price":null,"event_timestamp":"2026-12-01T03:05:11Z"}"#,
        #"{"event_id":"00000000-0000-0000-0000-000000000001","user_id":2147483648,"product_id":2,"event_type":"view","price":null,"event_timestamp":"2026-12-01T03:05:11Z"}"#,
        #"{"event_id":"00000000-0000-0000-0000-000000000001","user_id":1,"product_id":2,"event_type":"view","price":"1e3","event_timestamp":"2026-12-01T03:05:11Z"}"#,
        #"{"event_id":"00000000-0000-0000-0000-000000000001","user_id":1,"product_id":2,"event_type":"view","price":null,"event_timestamp":"2026-12-01 03:05:11"}"#,
        #"{"event_id":"00000000-0000-0000-0000-000000000001","user_id":1,"product_id":2,"event_type":"view","price":null,"event_timestamp":"2026-02-30T03:05:11Z"}"#,
        #"{"event_id":"00000000-0000-0000-0000-000000000001","user_id":"1","product_id":2,"event_type":"view","price":null,"event_timestamp":"2026-12-01T03:05:11Z"}"#,
    ])
    func valuesNotInCanonicalFormAreLeftToTheTextPath(_ record: String) throws {
        var decoder = LineDecoder()
        var out: [UInt8] = [1, 2, 3]
        try Array(record.utf8).withUnsafeBytes { raw in
            let line = try decoder.decode(raw)
            #expect(!CopyBinary.appendRow(from: line, plan: Self.plan, into: &out))
        }
        #expect(out == [1, 2, 3])
    }
}
