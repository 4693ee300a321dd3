import Foundation
import Ingest
import Postgres
import TestSupport
import Testing

@testable import Loading

/// Every type's edge values through `load`'s binary tuples, against what the server's text COPY
/// (psql's `\copy`) stores for the same values: the two tables must hold the same rows,
/// compared as `row_to_json` text (which tells -0 from 0 and keeps json's own spelling).
@Suite struct CopyBinaryTypesTests {
    static let contract = Contract(
        table: TableName(schema: "public", name: "typed"),
        columns: [
            ContractColumn(name: "id", type: .integer, notNull: true),
            ContractColumn(name: "i2", type: .smallint),
            ContractColumn(name: "i4", type: .integer),
            ContractColumn(name: "i8", type: .bigint),
            ContractColumn(name: "n", type: .numeric(precision: nil, scale: nil)),
            ContractColumn(name: "n38", type: .numeric(precision: 38, scale: 10)),
            ContractColumn(name: "n10", type: .numeric(precision: 10, scale: 2)),
            ContractColumn(name: "f4", type: .real),
            ContractColumn(name: "f8", type: .doublePrecision),
            ContractColumn(name: "t", type: .text),
            ContractColumn(name: "vc", type: .varchar(5)),
            ContractColumn(name: "b", type: .boolean),
            ContractColumn(name: "d", type: .date),
            ContractColumn(name: "ts", type: .timestamp),
            ContractColumn(name: "tstz", type: .timestamptz),
            ContractColumn(name: "u", type: .uuid),
            ContractColumn(name: "j", type: .json),
            ContractColumn(name: "jb", type: .jsonb),
        ], key: [0])

    static let createColumns = """
        id integer PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, n numeric, n38 numeric(38,10), n10 numeric(10,2),
        f4 real, f8 double precision, t text, vc varchar(5), b boolean, d date, ts timestamp, tstz timestamptz, u uuid,
        j json, jb jsonb
        """

    /// One record per line, each column's value in the form `validate` writes (docs/protocol.md).
    static let records: [String] = [
        // Integer limits; numeric at its precision and scale; the float extremes.
        #"{"id":1,"i2":-32768,"i4":-2147483648,"i8":-9223372036854775808,"n":"-1234567890123456789012345678901234567890.12345678901234567890","n38":"9999999999999999999999999999.9999999999","n10":"99999999.99","f4":3.4028235e+38,"f8":1.7976931348623157e+308,"t":"","vc":"abcde","b":true,"d":"0001-01-01","ts":"0001-01-01T00:00:00.000","tstz":"0001-01-01T00:00:00.000Z","u":"00000000-0000-0000-0000-000000000000","j":{"a":[1,2,{"b":null}]},"jb":{"b":2,"a":1}}"#,
        #"{"id":2,"i2":32767,"i4":2147483647,"i8":9223372036854775807,"n":"0.000000000000000000000000000000000001","n38":"-0.0000000001","n10":"-99999999.99","f4":1e-45,"f8":5e-324,"t":"tab\there, new\nline, back\\slash, \"quoted\"","vc":"日本語です","b":false,"d":"9999-12-31","ts":"9999-12-31T23:59:59.999999","tstz":"9999-12-31T23:59:59.999999Z","u":"FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF","j":"just a string","jb":[1,"x",null,1.50,true]}"#,
        // NaN and the infinities; zero with and without sign; trailing zero groups.
        #"{"id":3,"i2":0,"i4":0,"i8":0,"n":"NaN","n38":"0.0000000000","n10":"0.00","f4":"NaN","f8":"NaN","t":"é 日本 🎉","vc":"a","b":true,"d":"1969-12-31","ts":"1969-12-31T23:59:59.999999","tstz":"1969-12-31T23:59:59.999999Z","u":"6F9619FF-8b86-D011-b42d-00C04fc964ff","j":42,"jb":"text"}"#,
        #"{"id":4,"i2":-1,"i4":-1,"i8":-1,"n":"100000000","n38":"1.0000000000","n10":"0.01","f4":"Infinity","f8":"Infinity","t":"x","vc":"","b":false,"d":"1970-01-01","ts":"1970-01-01T00:00:00.000","tstz":"1970-01-01T00:00:00.000001Z","u":"6f9619ff-8b86-d011-b42d-00c04fc964ff","j":[],"jb":{"nested":{"deep":[{}]}}}"#,
        #"{"id":5,"i2":1,"i4":1,"i8":1,"n":"10000.0001","n38":"12345.6789000000","n10":"-0.00","f4":"-Infinity","f8":"-Infinity","t":"y","vc":"z","b":true,"d":"2000-02-29","ts":"2000-02-29T12:00:00.500","tstz":"2000-01-01T00:00:00.000Z","u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","j":{ "spaced" : [ 1 , 2 ] },"jb":1.50}"#,
        // Leap days, dates past 2038 and before 1900, the smallest normal and negative zero.
        #"{"id":6,"i2":2,"i4":2,"i8":2,"n":"-0","n38":"-12345678901234567890.1234567890","n10":"0.10","f4":-0.0,"f8":-0.0,"t":"z","vc":"ab","b":false,"d":"2024-02-29","ts":"2038-01-19T03:14:08.000","tstz":"2038-01-19T03:14:08.000Z","u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12","j":null,"jb":{"e":"\u00e9","q":"\"","nul":"\u0001"}}"#,
        #"{"id":7,"i2":3,"i4":3,"i8":3,"n":"123","n38":"0.5000000000","n10":"12.30","f4":0.1,"f8":2.2250738585072014e-308,"t":"w","vc":"abc","b":true,"d":"1900-02-28","ts":"1900-03-01T00:00:00.000","tstz":"2100-02-28T23:59:59.999Z","u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13","j":true,"jb":false}"#,
        #"{"id":8,"i2":4,"i4":4,"i8":4,"n":"0.1","n38":"1.5000000000","n10":"1.00","f4":1.1754944e-38,"f8":0.1,"t":"v","vc":"abcd","b":false,"d":"2400-02-29","ts":"2400-02-29T23:59:59.999","tstz":"2400-02-29T23:59:59.999Z","u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a14","j":{},"jb":[]}"#,
        // Every column but the key NULL, explicitly and by absence.
        #"{"id":9,"i2":null,"i4":null,"i8":null,"n":null,"n38":null,"n10":null,"f4":null,"f8":null,"t":null,"vc":null,"b":null,"d":null,"ts":null,"tstz":null,"u":null,"j":null,"jb":null}"#,
        #"{"id":10}"#,
        // Whole seconds and one fraction digit; a long text.
        #"{"id":11,"ts":"2026-06-30T12:00:00","tstz":"2026-06-30T12:00:00.1Z","t":"\#(String(repeating: "long ", count: 2000))"}"#,
    ]

    /// COPYs `records` into `by_text` (text format) and `by_binary` (load's tuples) and returns
    /// the rows that differ between the two, both ways.
    static func differences(
        _ database: TestDatabase, plan: LoadPlan, columns: String, records: [String], timeZone: String = "UTC"
    ) throws -> (rows: String?, differing: String?) {
        let connection = try database.connect()
        for table in ["by_text", "by_binary"] { try connection.execute("CREATE TABLE \(table) (\(columns))") }
        // The session's zone must not matter: every timestamptz value carries its Z.
        try connection.execute("SET TimeZone = '\(timeZone)'")
        var text: [UInt8] = []
        var binary = CopyBinary.header
        var decoder = LineDecoder()
        for record in records {
            try Array(record.utf8).withUnsafeBytes { raw in
                let line = try decoder.decode(raw)
                CopyText.appendRow(from: line, plan: plan, into: &text)
                #expect(CopyBinary.appendRow(from: line, plan: plan, into: &binary), "not canonical: \(record)")
            }
        }
        binary += CopyBinary.trailer
        let names = plan.names.joined(separator: ", ")
        _ = try connection.copyIn("COPY by_text (\(names)) FROM STDIN") { try $0.send(text) }
        _ = try connection.copyIn("COPY by_binary (\(names)) FROM STDIN WITH (FORMAT binary)") { try $0.send(binary) }
        let differing = try database.scalar(
            """
            SELECT count(*) FROM (
              (SELECT row_to_json(rec)::text FROM by_text rec EXCEPT SELECT row_to_json(rec)::text FROM by_binary rec)
              UNION ALL
              (SELECT row_to_json(rec)::text FROM by_binary rec EXCEPT SELECT row_to_json(rec)::text FROM by_text rec)) d
            """)
        return (try database.scalar("SELECT count(*) FROM by_binary"), differing)
    }

    @Test(arguments: ["UTC", "Pacific/Kiritimati", "America/St_Johns"])
    func everyTypesEdgeValuesStoreWhatTextCopyStores(_ timeZone: String) throws {
        try TestDatabase.with(applySetup: false) { database in
            let plan = LoadPlan(contract: Self.contract)
            let result = try Self.differences(
                database, plan: plan, columns: Self.createColumns, records: Self.records, timeZone: timeZone)
            #expect(result.rows == String(Self.records.count))
            #expect(result.differing == "0")
            // A few values read back as the server spells them, so a wrong pair of paths that
            // agree with each other would still be caught.
            let spelled = try database.scalar(
                "SELECT concat_ws('|', i8, n38, d, ts, tstz AT TIME ZONE 'UTC', u, f8, jb) FROM by_binary WHERE id = 2")
            #expect(
                spelled
                    == "9223372036854775807|-0.0000000001|9999-12-31|9999-12-31 23:59:59.999999|9999-12-31 23:59:59.999999|ffffffff-ffff-ffff-ffff-ffffffffffff|5e-324|[1, \"x\", null, 1.50, true]"
            )
            #expect(try database.scalar("SELECT concat_ws('|', n, f4, f8, d) FROM by_binary WHERE id = 3") == "NaN|NaN|NaN|1969-12-31")
            #expect(try database.scalar("SELECT t = '' AND t IS NOT NULL FROM by_binary WHERE id = 1") == "t")
            #expect(try database.scalar("SELECT count(*) FROM by_binary WHERE t IS NULL") == "2")
            #expect(try database.scalar("SELECT j::text FROM by_binary WHERE id = 5") == #"{ "spaced" : [ 1 , 2 ] }"#)
        }
    }

    /// The table's type, not the contract's, chooses the format: an integer into a bigint, a
    /// real into a double, a varchar into text or character(n), a smallint into a numeric.
    @Test func widerTableTypesGetTheirOwnFormat() throws {
        try TestDatabase.with(applySetup: false) { database in
            let contract = Contract(
                table: TableName(schema: nil, name: "wide"),
                columns: [
                    ContractColumn(name: "a", type: .integer), ContractColumn(name: "b", type: .real),
                    ContractColumn(name: "c", type: .varchar(4)), ContractColumn(name: "d", type: .smallint),
                    ContractColumn(name: "e", type: .varchar(3)), ContractColumn(name: "f", type: .numeric(precision: 6, scale: 2)),
                ])
            let plan = LoadPlan(
                contract: contract, table: contract.table, targetTable: "public.wide",
                tableTypes: [
                    .declared(.bigint), .declared(.doublePrecision), .declared(.text), .declared(.numeric(precision: 10, scale: 0)),
                    .character(5), .declared(.numeric(precision: 12, scale: 4)),
                ])
            let records = [
                #"{"a":-2147483648,"b":3.4028235e+38,"c":"abcd","d":-32768,"e":"ab","f":"-9999.99"}"#,
                #"{"a":2147483647,"b":0.1,"c":"","d":32767,"e":"é","f":"0.01"}"#,
                #"{"a":0,"b":"NaN","c":"x","d":0,"e":"","f":"NaN"}"#,
            ]
            let result = try Self.differences(
                database, plan: plan, columns: "a bigint, b double precision, c text, d numeric(10,0), e character(5), f numeric(12,4)",
                records: records)
            #expect(result.rows == "3")
            #expect(result.differing == "0")
            #expect(try database.scalar("SELECT e || '|' FROM by_binary WHERE a = 0") == "|")
            #expect(try database.scalar("SELECT f::text FROM by_binary WHERE a = 2147483647") == "0.0100")
        }
    }

    /// The reading thread's encoder guesses each member's column from the previous record; a
    /// record with its keys in another order, an escaped key or an extra key still gets the
    /// tuple the plain lookup makes.
    @Test func theEncodersColumnGuessesNeverChangeATuple() throws {
        let plan = LoadPlan(contract: Self.contract)
        let encoder = TupleEncoder(plan: plan)
        let records = [
            #"{"id":1,"i2":5,"t":"a","u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}"#,
            #"{"id":2,"i2":6,"t":"b","u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"}"#,
            #"{"t":"c","id":3,"u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13","i2":7}"#,
            #"{"extra":1,"i2":8,"id":4,"t":"d"}"#,
            #"{"id":5,"i2":9,"t":"e","t":"last wins"}"#,
        ]
        var decoder = LineDecoder()
        for record in records {
            try Array(record.utf8).withUnsafeBytes { raw in
                let line = try decoder.decode(raw)
                var expected: [UInt8] = []
                #expect(CopyBinary.appendRow(from: line, plan: plan, into: &expected))
                let room = line.bytes.count + plan.tupleSlack
                let buffer = UnsafeMutableRawPointer.allocate(byteCount: room, alignment: 8)
                defer { buffer.deallocate() }
                let count = try #require(encoder.writeRow(from: line, to: buffer))
                #expect(Array(UnsafeRawBufferPointer(start: buffer, count: count)) == expected, "\(record)")
            }
        }
    }

    /// Values not in canonical form for their column: no tuple (the text path takes the batch,
    /// and the server gives each refused row its own message).
    @Test(arguments: [
        #"{"id":1,"i2":32768}"#,
        #"{"id":1,"i4":2147483648}"#,
        #"{"id":1,"i8":9223372036854775808}"#,
        #"{"id":1,"i8":-9223372036854775809}"#,
        #"{"id":1,"i4":"1"}"#,
        #"{"id":1,"i4":1.0}"#,
        #"{"id":1,"n":"1e5"}"#,
        #"{"id":1,"n":".5"}"#,
        #"{"id":1,"n":"Infinity"}"#,
        #"{"id":1,"f8":1e400}"#,
        #"{"id":1,"f4":1e39}"#,
        #"{"id":1,"f8":"1.5"}"#,
        #"{"id":1,"f8":"nan"}"#,
        #"{"id":1,"t":"a\u0000b"}"#,
        #"{"id":1,"t":5}"#,
        #"{"id":1,"b":"true"}"#,
        #"{"id":1,"d":"2023-02-29"}"#,
        #"{"id":1,"d":"2023-1-01"}"#,
        #"{"id":1,"ts":"2026-06-30T12:00:00.000Z"}"#,
        #"{"id":1,"tstz":"2026-06-30T12:00:00.000"}"#,
        #"{"id":1,"tstz":"2026-06-30 12:00:00.000Z"}"#,
        #"{"id":1,"tstz":"2026-06-30T24:00:00.000Z"}"#,
        #"{"id":1,"tstz":"2026-06-30T12:00:00.1234567Z"}"#,
        #"{"id":1,"u":"6f9619ff8b86d011b42d00c04fc964ff"}"#,
        #"{"id":1,"u":"6f9619ff-8b86-d011-b42d-00c04fc964fg"}"#,
    ])
    func valuesNotInCanonicalFormAreLeftToTheTextPath(_ record: String) throws {
        var decoder = LineDecoder()
        var out: [UInt8] = [1, 2, 3]
        try Array(record.utf8).withUnsafeBytes { raw in
            let line = try decoder.decode(raw)
            #expect(!CopyBinary.appendRow(from: line, plan: LoadPlan(contract: Self.contract), into: &out))
        }
        #expect(out == [1, 2, 3])
    }
}
