import Foundation
import TestSupport
import Testing

/// Many small files waiting in `load` keep its memory flat (issue 23: peak RSS ≤ 25 MB for any
/// input). Each complete file held up to ~25 KB of empty buffers until its commit, and a batch
/// of 2 MiB of lines counted only the bytes: 3,000 files of 5 rows peaked at 75 MB (release).
@Suite struct LoadMemoryTests {
    /// Peak resident memory of `pid` in KiB (`VmHWM`).
    static func peakRSS(_ pid: Int32) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        return 0
    }

    @Test func twoThousandSmallFilesAddLittleToThePeak() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let run = try StreamingLoad(arguments: f.arguments(db))
            try run.send(try f.file("first.csv", valid: 5, rejects: 1))
            #expect(try eventually(timeout: 60) { try db.query("SELECT count(*) FROM ingest_checkpoints") == [["1"]] })
            let pid = run.process.processIdentifier
            let base = Self.peakRSS(pid)

            var lines: [String] = []
            for n in 0..<2_000 { lines += try f.file("small-\(n).csv", valid: 4, rejects: n % 4 == 0 ? 1 : 0) }
            try run.send(lines)
            let committed = try eventually(timeout: 240) { try db.query("SELECT count(*) FROM ingest_checkpoints") == [["2001"]] }
            let peak = Self.peakRSS(pid)
            let status = run.finish()
            print("load memory: peak RSS \(base / 1024) MiB after one file, \(peak / 1024) MiB after 2,000 small files")
            #expect(committed, "\(run.stderr.text())")
            #expect(status == 0, "\(run.stderr.text())")
            #expect(base > 0 && peak - base < 8 * 1024, "2,000 small files added \(peak - base) KiB")
            #expect(try db.query("SELECT count(*), count(DISTINCT event_id) FROM ecommerce_events") == [["8005", "8005"]])
            #expect(try db.query("SELECT count(*) FROM ecommerce_bad_records") == [["501"]])
        }
    }
}
