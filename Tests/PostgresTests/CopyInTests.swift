import Foundation
import Postgres
import TestSupport
import Testing

@Suite struct CopyInTests {
    @Test func copiesNonASCIIRowsByByteCount() throws {
        try TestDatabase.with(applySetup: false) { database in
            let connection = try database.connect()
            try connection.execute("CREATE TABLE words (id int PRIMARY KEY, word text)")
            let words = ["plain", "Zoë", "東京", "🛒🛒", "naïve café", #"tab\there"#]
            let text = words.enumerated().map { "\($0.offset)\t\($0.element)\n" }.joined()
            let bytes = Array(text.utf8)
            #expect(bytes.count > text.count)  // A character count would cut the data short.

            let copied = try connection.copyIn("COPY words (id, word) FROM STDIN") { copy in
                // Split mid-row and mid-character: chunk boundaries must not matter.
                let cut = bytes.firstIndex(of: 0xC3)! + 1
                try copy.send(Array(bytes[..<cut]))
                try Array(bytes[cut...]).withUnsafeBytes { try copy.send($0) }
            }
            #expect(copied == words.count)
            let stored = try connection.execute("SELECT word FROM words ORDER BY id").rows.map { $0[0] }
            // COPY's text format turns \t into a tab.
            #expect(stored == words.map { $0.replacingOccurrences(of: #"\t"#, with: "\t") })
        }
    }

    @Test func aDuplicateKeyIsADataError() throws {
        try TestDatabase.with(applySetup: false) { database in
            let connection = try database.connect()
            try connection.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
            let error = try #require(throws: PostgresError.self) {
                try connection.copyIn("COPY items FROM STDIN") { copy in
                    try copy.send(Array("1\ta\n2\tb\n1\tc\n".utf8))
                }
            }
            #expect(error.sqlstate == "23505")
            #expect(error.category == .data)
            #expect(error.detail == "Key (id)=(1) already exists.")
            #expect(error.description.hasPrefix(#"ERROR 23505: duplicate key value violates unique constraint "items_pkey""#))
            // The whole COPY rolled back, and the connection is ready for more.
            #expect(try connection.execute("SELECT count(*) FROM items").value(row: 0, column: 0) == "0")
        }
    }

    @Test func aThrowingBodyAbortsTheCopy() throws {
        struct SourceVanished: Error {}
        try TestDatabase.with(applySetup: false) { database in
            let connection = try database.connect()
            try connection.execute("CREATE TABLE items (id int PRIMARY KEY)")
            #expect(throws: SourceVanished.self) {
                try connection.copyIn("COPY items FROM STDIN") { copy in
                    try copy.send(Array("1\n2\n".utf8))
                    throw SourceVanished()
                }
            }
            #expect(!connection.isConnectionBad)
            #expect(try connection.execute("SELECT count(*) FROM items").value(row: 0, column: 0) == "0")
            let copied = try connection.copyIn("COPY items FROM STDIN") { try $0.send(Array("3\n".utf8)) }
            #expect(copied == 1)
        }
    }

    @Test func malformedDataIsADataError() throws {
        try TestDatabase.with(applySetup: false) { database in
            let connection = try database.connect()
            try connection.execute("CREATE TABLE items (id int)")
            let error = try #require(throws: PostgresError.self) {
                try connection.copyIn("COPY items FROM STDIN") { try $0.send(Array("1\nnope\n".utf8)) }
            }
            #expect(error.sqlstate == "22P02")
            #expect(error.category == .data)
            #expect(try connection.execute("SELECT 1").rowCount == 1)
        }
    }

    @Test func copyInRefusesOtherStatements() throws {
        try TestDatabase.with(applySetup: false) { database in
            let connection = try database.connect()
            var bodyRan = false
            #expect(throws: PostgresError.self) {
                _ = try connection.copyIn("SELECT 1") { _ in bodyRan = true }
            }
            #expect(!bodyRan)
            let missing = try #require(throws: PostgresError.self) {
                _ = try connection.copyIn("COPY nowhere FROM STDIN") { _ in bodyRan = true }
            }
            #expect(missing.sqlstate == "42P01")
            #expect(!bodyRan)
            #expect(try connection.execute("SELECT 1").rowCount == 1)
        }
    }

    @Test func largeCopyInOneSend() throws {
        try TestDatabase.with(applySetup: false) { database in
            let connection = try database.connect()
            try connection.execute("CREATE TABLE numbers (n int, label text)")
            var bytes: [UInt8] = []
            for n in 0..<50_000 { bytes += Array("\(n)\tnuméro \(n)\n".utf8) }
            let copied = try connection.copyIn("COPY numbers FROM STDIN") { try $0.send(bytes) }
            #expect(copied == 50_000)
            #expect(try database.scalar("SELECT sum(n) FROM numbers") == String((0..<50_000).reduce(0, +)))
        }
    }
}
