import Foundation
import Ingest
import Loading
import Postgres
import TestSupport
import Testing

/// The paths `load` takes for speed: binary tuples made on arrival, with the text path for
/// records not in canonical form; one `lstat` instead of a second hash before archiving.
@Suite struct LoadFastPathTests {
    let load = Executables.url("load")

    /// The marker of `lines` (its last line) with the file's inode and mtime as `watch` writes them.
    func withVersion(_ lines: [String], of url: URL, sha256: String? = nil) throws -> [String] {
        var st = stat()
        #expect(lstat(url.path, &st) == 0)
        let version = FileVersion(st)
        var marker = lines.last!
        if let sha256 { marker = marker.replacing(#/"sha256":"[0-9a-f]+"/#, with: #""sha256":"\#(sha256)""#) }
        marker.removeLast()
        marker += #","inode":\#(version.inode),"mtime_ns":\#(version.modifiedNanoseconds)}"#
        return lines.dropLast() + [marker]
    }

    @Test func recordsNotInCanonicalFormLoadThroughTheTextPath() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let odd =
                #"{"kind":"record","file":"a.csv","line":9,"event_id":"00000000-0000-0000-0000-00000000000a","user_id":" 5","product_id":6,"event_type":"view","price":null,"event_timestamp":"2024-01-30 10:15:23+00"}"#
            let lines = try f.file("a.csv", valid: 3, rejects: 1, extraRecords: [odd])
            let result = try runTool(load, f.arguments(db), stdin: stdinData(lines))
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 4)
            #expect(
                try count(db, "SELECT count(*) FROM ecommerce_events WHERE event_timestamp = '2024-01-30 10:15:23+00' AND user_id = 5") == 1
            )
            #expect(try count(db, "SELECT count(*) FROM ecommerce_bad_records") == 1)
            #expect(FileManager.default.fileExists(atPath: f.processed.appendingPathComponent("a.csv").path))
        }
    }

    @Test func theCommittedVersionIsRecognisedByLstatWithoutHashingAgain() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let url = f.incoming.appendingPathComponent("b.csv")
            // A marker whose hash does not match the bytes: only a second hash would notice, and
            // load must not hash again when the marker carries inode and mtime.
            let lines = try withVersion(try f.file("b.csv", valid: 2, rejects: 0), of: url, sha256: String(repeating: "a", count: 64))
            let result = try runTool(load, f.arguments(db), stdin: stdinData(lines))
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 2)
            #expect(FileManager.default.fileExists(atPath: f.processed.appendingPathComponent("b.csv").path))
            #expect(!FileManager.default.fileExists(atPath: url.path))
        }
    }

    @Test func aReplacementOfTheSameSizeIsLeftInPlace() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let url = f.incoming.appendingPathComponent("c.csv")
            let lines = try withVersion(try f.file("c.csv", valid: 2, rejects: 0), of: url)
            // Same name, same size, new content and inode: a newer version, not ours to move.
            let original = try Data(contentsOf: url)
            let replacement = f.root.appendingPathComponent("c.tmp")
            try Data(original.map { $0 == UInt8(ascii: "7") ? UInt8(ascii: "8") : $0 }).write(to: replacement)
            #expect(rename(replacement.path, url.path) == 0)
            let result = try runTool(load, f.arguments(db), stdin: stdinData(lines))
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try count(db, "SELECT count(*) FROM ecommerce_events") == 2)
            #expect(FileManager.default.fileExists(atPath: url.path))
            #expect(!FileManager.default.fileExists(atPath: f.processed.appendingPathComponent("c.csv").path))
        }
    }
}
