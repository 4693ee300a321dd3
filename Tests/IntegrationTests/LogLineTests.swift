import Foundation
import Ingest
import Logging
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The log dialect, pinned: `TIME - STAGE - LEVEL - MESSAGE`, the stage named once (by the
/// line, never again inside the message), control characters escaped, metadata sorted.
@Suite struct LogLineTests {
    /// One line of every shape, recorded in memory (TestSupport's LogRecorder) with the format
    /// the tools write to stderr.
    @Test func linesHaveOneFormat() {
        let recorder = LogRecorder()
        var logger = recorder.logger(label: "watch")
        logger.info("Emitted batch_0001.csv (50 rows)")
        logger.error("x\nERROR - forged.csv: Permission denied")
        logger[metadataKey: "pipeline"] = "p1"
        logger.warning("cannot claim a.csv", metadata: ["attempt": "2"])
        #expect(
            recorder.lines == [
                "2024-01-30 10:15:23 - watch - INFO - Emitted batch_0001.csv (50 rows)",
                "2024-01-30 10:15:23 - watch - ERROR - x\\nERROR - forged.csv: Permission denied",
                "2024-01-30 10:15:23 - watch - WARNING - cannot claim a.csv attempt=2 pipeline=p1",
            ])
    }

    /// A full disk is waited out with one line when the wait starts and one when space is back
    /// (without a logger, under the process's stage: FaultTests checks it on load).
    @Test func aDiskSpaceWaitLogsUnderTheStage() throws {
        let recorder = LogRecorder()
        // Below /proc: a file system that never has space, so the line is the same every time.
        let path = "/proc/no-such-folder/journal"
        var attempts = 0
        let written = try waitingForSpace(at: path, needing: 4096, logger: recorder.logger(label: "load")) {
            attempts += 1
            if attempts == 1 { throw SystemError("write", errno: ENOSPC, path: path) }
            return attempts
        }
        #expect(written == 2)
        let lines = recorder.lines
        #expect(lines.count == 2, "\(lines)")
        #expect(
            lines.first
                == "2024-01-30 10:15:23 - load - WARNING - /proc/no-such-folder/journal: No space left on device: 4 KiB needed, 0 B free; waiting for space, retrying (nothing is lost)"
        )
        let resumed = #/2024-01-30 10:15:23 - load - NOTICE - /proc/no-such-folder/journal: space is back, resumed after \d+ ms/#
        #expect(lines.last?.wholeMatch(of: resumed) != nil, "\(lines)")
    }

    /// load's own lines, from the real process: start-up, the file, the totals; none repeats
    /// the stage inside its message (`load - INFO - load: done: …` before).
    @Test func loadsLinesNameTheStageOnce() throws {
        try TestDatabase.with { db in
            let f = try LoadFixture()
            let lines = try f.file("pinned.csv", valid: 3, rejects: 1)
            let run = try runTool(
                Executables.url("load"), f.arguments(db), stdin: Data((lines.joined(separator: "\n") + "\n").utf8),
                environment: environmentWithoutColumns(), timeout: 60)
            #expect(run.status == 0, "\(run.stderr)")
            let logged = run.stderr.split(separator: "\n").map(String.init)
            let format = #/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - load - (DEBUG|INFO|NOTICE|WARNING) - (.+)/#
            for line in logged {
                let match = try #require(line.wholeMatch(of: format), "not a log line: \(line)")
                #expect(!match.output.2.hasPrefix("load:"), "the stage named twice: \(line)")
            }
            #expect(logged.contains { $0.contains(" - load - INFO - connecting to ") }, "\(run.stderr)")
            #expect(
                logged.last?.hasSuffix(
                    " - load - INFO - done: 3 rows loaded, 1 rejected, 1 files committed, 0 quarantined, 0 skipped as already committed, 1 batches"
                ) == true, "\(run.stderr)")
        }
    }
}
