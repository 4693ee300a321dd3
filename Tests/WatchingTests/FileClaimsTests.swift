import Foundation
import Testing

@testable import Ingest

/// Claims on a shared folder's files: one holder at a time, taken over only from a pipeline
/// silent for the lease, or when the claim names another version of the file.
@Suite struct FileClaimsTests {
    private func folder() throws -> String {
        let path = NSTemporaryDirectory() + "claims-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    private func version(inode: UInt64) -> FileVersion {
        FileVersion(device: 1, inode: inode, size: 10, modifiedNanoseconds: 5, changedNanoseconds: 5)
    }

    @Test func oneHolderAtATimeWhileItIsAlive() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = FileClaims(folder: dir, pipeline: "A", leaseMilliseconds: 60_000)
        let b = FileClaims(folder: dir, pipeline: "B", leaseMilliseconds: 60_000)
        try a.prepare()
        try b.prepare()
        #expect(try a.claim("x.csv", version: version(inode: 7)) == .claimed(takenOverFrom: nil))
        #expect(try b.claim("x.csv", version: version(inode: 7)) == .heldBy("A"))
        #expect(try a.claim("x.csv", version: version(inode: 7)) == .claimed(takenOverFrom: nil))  // its own
        a.release("x.csv")
        #expect(try b.claim("x.csv", version: version(inode: 7)) == .claimed(takenOverFrom: nil))
    }

    @Test func aSilentPipelinesClaimIsTakenOver() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = FileClaims(folder: dir, pipeline: "A", leaseMilliseconds: 200)
        let b = FileClaims(folder: dir, pipeline: "B", leaseMilliseconds: 200)
        try a.prepare()
        try b.prepare()
        #expect(try a.claim("x.csv", version: version(inode: 7)) == .claimed(takenOverFrom: nil))
        #expect(try b.claim("x.csv", version: version(inode: 7)) == .heldBy("A"))
        // A's heartbeat is now older than the lease, as after kill -9.
        let old = Date().addingTimeInterval(-10)
        try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: dir + "/.claims/.pipelines/A")
        #expect(!b.isAlive("A"))
        #expect(try b.claim("x.csv", version: version(inode: 7)) == .claimed(takenOverFrom: "A"))
        #expect(try a.claim("x.csv", version: version(inode: 7)) == .heldBy("B"))
    }

    @Test func aClaimOnAnotherVersionOfTheNameIsStale() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = FileClaims(folder: dir, pipeline: "A", leaseMilliseconds: 60_000)
        let b = FileClaims(folder: dir, pipeline: "B", leaseMilliseconds: 60_000)
        try a.prepare()
        try b.prepare()
        #expect(try a.claim("x.csv", version: version(inode: 7)) == .claimed(takenOverFrom: nil))
        // The file A claimed left the folder without its claim; a new file took the name.
        #expect(try b.claim("x.csv", version: version(inode: 8)) == .claimed(takenOverFrom: "A"))
        let text = try String(contentsOfFile: dir + "/.claims/x.csv", encoding: .utf8)
        #expect(text == "8 B\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/.claims").sorted() == [".pipelines", "x.csv"])
    }
}
