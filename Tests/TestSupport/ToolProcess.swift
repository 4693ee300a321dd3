import Foundation

/// What a finished tool process left behind.
public struct ToolResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String

    public init(status: Int32, stdout: String, stderr: String) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }
    /// stdout split into lines, without the empty one after the last newline.
    public var lines: [String] {
        stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast(stdout.hasSuffix("\n") ? 1 : 0).map(String.init)
    }
}

/// Runs a built executable as a real process with real pipes, and waits for it.
///
/// stdout and stderr are drained concurrently, so a chatty process cannot block on a full pipe;
/// a process still running after `timeout` seconds is killed and the call throws.
public func runTool(
    _ executable: URL, _ arguments: [String], stdin: Data? = nil, environment: [String: String]? = nil,
    currentDirectory: URL? = nil, timeout: Double = 120
) throws -> ToolResult {
    signal(SIGPIPE, SIG_IGN)  // a tool that exits before reading all its input must not kill the tests
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    if let environment { process.environment = environment }
    if let currentDirectory { process.currentDirectoryURL = currentDirectory }
    let input = Pipe()
    let output = Pipe()
    let errors = Pipe()
    process.standardInput = input
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    let outData = DrainedPipe(output)
    let errData = DrainedPipe(errors)
    if let stdin {
        DispatchQueue.global().async {
            try? input.fileHandleForWriting.write(contentsOf: stdin)
            try? input.fileHandleForWriting.close()
        }
    } else {
        try? input.fileHandleForWriting.close()
    }
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(10_000) }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        throw ToolTimeout(
            description:
                "\(executable.lastPathComponent) \(arguments.joined(separator: " ")) still running after \(timeout) s; stderr: \(errData.text())"
        )
    }
    process.waitUntilExit()
    return ToolResult(status: process.terminationStatus, stdout: outData.text(), stderr: errData.text())
}

public struct ToolTimeout: Error, CustomStringConvertible {
    public let description: String
}

/// Reads a pipe to its end on a background thread.
public final class DrainedPipe: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()

    public init(_ pipe: Pipe) {
        let handle = pipe.fileHandleForReading
        Thread.detachNewThread { [self] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                lock.lock()
                data.append(chunk)
                lock.unlock()
            }
            done.signal()
        }
    }

    /// What has arrived so far, without waiting.
    public func snapshot() -> String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }

    /// Waits for end of file (at most `timeout` seconds) and returns the text.
    public func text(timeout: Double = 30) -> String {
        if done.wait(timeout: .now() + timeout) == .success { done.signal() }
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }
}

/// Repeats `check` until it returns true or `timeout` passes.
public func eventually(timeout: Double = 30, _ check: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try check() { return true }
        usleep(50_000)
    }
    return try check()
}
