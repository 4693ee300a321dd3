import Foundation

/// A `load` process whose stdin the test writes to as it goes: line by line in the test's own
/// thread (``send(_:)``), or in the background (``feed(_:)``), so the test can see whether load
/// took a write in or left the writer stuck on a full pipe (``written``).
public final class FedLoad: @unchecked Sendable {
    public let process = Process()
    private let input = Pipe()
    public let stderr: DrainedPipe
    private let lock = NSLock()
    private var writes = 0

    /// Starts `executable` (the built `load`) with `arguments`; `launcher` runs it through
    /// another command (`ip netns exec NAME`). stdout is discarded, stderr drained.
    public init(executable: URL, arguments: [String], environment: [String: String]? = nil, launcher: [String] = []) throws {
        signal(SIGPIPE, SIG_IGN)  // writing to a killed process must fail, not kill the tests
        let command = launcher + [executable.path] + arguments
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        if let environment { process.environment = environment }
        process.standardInput = input
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        stderr = DrainedPipe(errors)
    }

    /// Writes `lines` (newline-terminated), returning once load has taken them all in.
    public func send(_ lines: [String]) throws {
        try input.fileHandleForWriting.write(contentsOf: Data((lines.joined(separator: "\n") + "\n").utf8))
    }

    /// Writes `lines` on a background thread; ``written`` counts the writes finished.
    public func feed(_ lines: [String]) {
        let data = Data((lines.joined(separator: "\n") + "\n").utf8)
        let handle = input.fileHandleForWriting
        DispatchQueue.global().async { [self] in
            try? handle.write(contentsOf: data)
            lock.lock()
            writes += 1
            lock.unlock()
        }
    }

    /// The ``feed(_:)`` writes load has taken in whole.
    public var written: Int {
        lock.lock()
        defer { lock.unlock() }
        return writes
    }

    public func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Closes stdin and waits for the exit status (kill -9 after `timeout` seconds).
    public func finish(timeout: Double = 60) -> Int32 {
        try? input.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill9() }
        return process.terminationStatus
    }
}
