import Foundation
import Testing

@testable import Posix

/// The system layer: each helper against the kernel, not a stand-in.
@Suite struct PosixTests {
    private func scratch() throws -> String {
        var template = Array("\(NSTemporaryDirectory())/posix-test.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SystemError("mkdtemp", errno: errno) }
        return String(cString: made)
    }

    @Test func backoffDoublesUpToItsCeiling() {
        let delays = (1...9).map { Backoff.database.delay(attempt: $0) }
        #expect(delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30])
        #expect(Backoff(first: 0.1, ceiling: 5).delay(attempt: 7) == 5)
        #expect(Backoff(first: 0.1, ceiling: 5).delay(attempt: 1) == 0.1)
    }

    struct Flaky: Error {}
    struct Fatal: Error {}

    @Test func retryingRetriesWhatItMayAndGivesUpAfterTheLimit() throws {
        var calls = 0
        var retries: [Int] = []
        let fast = Backoff(first: 0.001, ceiling: 0.002)
        let value = try retrying(
            backoff: fast, isRetryable: { $0 is Flaky }, onRetry: { _, attempt, _ in retries.append(attempt) },
            operation: { () throws -> Int in
                calls += 1
                if calls < 3 { throw Flaky() }
                return 42
            })
        #expect(value == 42 && calls == 3 && retries == [1, 2])

        calls = 0
        #expect(throws: RetryEnd.self) {
            try retrying(
                backoff: fast, maxAttempts: 2, isRetryable: { $0 is Flaky },
                operation: { () throws -> Void in
                    calls += 1
                    throw Flaky()
                })
        }
        #expect(calls == 3)  // the first try and two retries

        calls = 0
        #expect(throws: Fatal.self) {
            try retrying(
                backoff: fast, isRetryable: { $0 is Flaky },
                operation: { () throws -> Void in
                    calls += 1
                    throw Fatal()
                })
        }
        #expect(calls == 1)
    }

    @Test func aStopEndsTheBackoffWaitEarly() {
        let started = monotonicSeconds()
        var asked = 0
        var result: Result<Void, any Error>?
        do {
            try retrying(
                backoff: Backoff(first: 30, ceiling: 30),
                stop: {
                    asked += 1
                    return asked > 2
                },
                isRetryable: { _ in true },
                operation: { throw Flaky() })
            result = .success(())
        } catch { result = .failure(error) }
        let elapsed = monotonicSeconds() - started
        guard case .failure(let error) = result, case RetryEnd.stopped(let last) = error else {
            Issue.record("expected RetryEnd.stopped, got \(String(describing: result))")
            return
        }
        #expect(last is Flaky)
        #expect(elapsed < 5, "a 30 s backoff with a stop after 2 slices took \(elapsed) s")
    }

    @Test func sleepSleepsTheTimeAndReportsAStop() {
        let t0 = monotonicSeconds()
        #expect(sleep(seconds: 0.05))
        #expect(monotonicSeconds() - t0 >= 0.049)
        let t1 = monotonicSeconds()
        #expect(!sleep(seconds: 10, slice: 0.01, stop: { monotonicSeconds() - t1 > 0.05 }))
        #expect(monotonicSeconds() - t1 < 2)
    }

    @Test func makeDirectoriesMakesParentsAndRefusesAFile() throws {
        let root = try scratch()
        try makeDirectories(root + "/a/b/c")
        var st = stat()
        #expect(stat(root + "/a/b/c", &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR)
        try makeDirectories(root + "/a/b/c")  // again: fine
        FileManager.default.createFile(atPath: root + "/file", contents: Data("x".utf8))
        #expect(throws: SystemError.self) { try makeDirectories(root + "/file/d") }
        #expect(throws: SystemError.self) { try makeDirectories(root + "/file") }
    }

    @Test func publishingReplacesOrRefusesAndLeavesNoTemporary() throws {
        let root = try scratch()
        let target = root + "/out.txt"
        let write: (String) -> (Int32) throws -> Void = { text in { fd in try Array(text.utf8).withUnsafeBytes { try writeAll(fd, $0) } } }
        #expect(try publishAtomically(at: target, temporary: root + "/.out.tmp", .replacing, write("one")))
        #expect(try publishAtomically(at: target, temporary: root + "/.out.tmp", .replacing, write("two")))
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "two")
        #expect(try !publishAtomically(at: target, temporary: root + "/.out.tmp", .exclusive, write("three")))
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "two")
        #expect(try publishAtomically(at: root + "/new.txt", temporary: root + "/.new.tmp", .exclusive, write("four")))
        #expect(try String(contentsOfFile: root + "/new.txt", encoding: .utf8) == "four")
        let left = try FileManager.default.contentsOfDirectory(atPath: root).sorted()
        #expect(left == ["new.txt", "out.txt"])
        // A failing producer publishes nothing and still removes its temporary file.
        #expect(throws: Fatal.self) {
            try publishAtomically(at: root + "/bad.txt", temporary: root + "/.bad.tmp", .replacing) { _ in throw Fatal() }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: root).sorted() == ["new.txt", "out.txt"])
    }

    @Test func writeAllCallsTheFullHookOnENOSPC() throws {
        let fd = open("/dev/full", O_WRONLY | O_CLOEXEC)
        try #require(fd >= 0)
        defer { close(fd) }
        var calls: [Int32] = []
        #expect(throws: Fatal.self) {
            try Array("bytes".utf8).withUnsafeBytes { raw in
                try writeAll(fd, raw, path: "/dev/full") { code in
                    calls.append(code)
                    if calls.count == 3 { throw Fatal() }
                }
            }
        }
        #expect(calls == [ENOSPC, ENOSPC, ENOSPC])
        do {
            try Array("bytes".utf8).withUnsafeBytes { try writeAll(fd, $0, path: "/dev/full") }
            Issue.record("a write to /dev/full without a hook succeeded")
        } catch let error as SystemError {
            #expect(error.errno == ENOSPC && error.path == "/dev/full" && error.call == "write")
        }
    }

    @Test func writeAllTurnsEPIPEIntoBrokenPipe() throws {
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        close(fds[0])
        signal(SIGPIPE, SIG_IGN)
        defer { close(fds[1]) }
        #expect(throws: BrokenPipe.self) { try Array("x".utf8).withUnsafeBytes { try writeAll(fds[1], $0) } }
    }

    @Test func aThreadRunsItsBodyAndJoins() throws {
        final class Box: @unchecked Sendable { var value = 0 }
        let box = Box()
        let thread = try JoinableThread(blockingSignals: true) { box.value = 7 }
        thread.join()
        thread.join()
        #expect(box.value == 7)
    }

    @Test func trimming() {
        #expect("  a b\t".trimmingBlanks() == "a b")
        #expect(" \n x \r\n".trimmingWhitespace() == "x")
        #expect("xxaxx".trimming("x") == "a")
        #expect("   ".trimmingBlanks() == "")
        #expect("".trimmingWhitespace() == "")
    }
}
