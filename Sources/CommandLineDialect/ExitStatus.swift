#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The exit codes every tool (and bin/ script) uses, and nothing else.
public enum ExitStatus: Int32, Sendable {
    /// Done, or stopped by the first signal after finishing what was in hand; also a closed
    /// stdout (EPIPE: the reader wanted no more).
    case success = 0
    /// A runtime failure: a file, folder or database the run needs is not usable.
    case failure = 1
    /// The command line is wrong (BSD sysexits' EX_USAGE, as swift-argument-parser uses).
    case usage = 64
    /// A second SIGINT/SIGTERM ended the run at once (128 + SIGINT, as a shell reports it).
    case interrupted = 130
}

/// A failure that ends a tool: printed as one line, `Error: <description>`, exit status 1.
///
/// Say where and what (`cannot write to folder data/incoming: Permission denied`); never a
/// password or a connection string.
public struct RuntimeError: Error, CustomStringConvertible, Sendable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
