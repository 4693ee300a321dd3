import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A full disk is a wait, not a death: space usually comes back (an operator cleans up, logs
/// rotate, a spool drains), and a pipeline that exits loses its place for nothing.
///
/// Wrap any write whose failure would stop the stream: ``waitingForSpace(at:needing:logger:_:)``
/// runs it again until it succeeds; ``writeAllWaitingForSpace(_:_:path:logger:)`` resumes a
/// partial write where it stopped. The first failure logs one line naming the path and the space
/// needed; then one line a minute while it lasts, and one when the write went through.
public struct DiskSpaceWait {
    public let path: String
    public let needed: Int
    private let logger: Logger
    private var attempt = 0
    private var started = 0.0
    private var lastReport = 0.0

    /// The pauses between attempts: 0.1 s doubling to 5 s.
    public static let backoff = Backoff(first: 0.1, ceiling: 5)

    public init(path: String, needed: Int, logger: Logger) {
        self.path = path
        self.needed = needed
        self.logger = logger
    }

    /// True for the errors that mean "no space": `ENOSPC` (disk or inodes full), `EDQUOT` (quota).
    public static func isOutOfSpace(_ error: Error) -> Bool {
        guard let error = error as? SystemError else { return false }
        return isOutOfSpace(errno: error.errno)
    }

    public static func isOutOfSpace(errno code: Int32) -> Bool { code == ENOSPC || code == EDQUOT }

    /// Logs (the first time, then once a minute) and sleeps with backoff: 0.1 s doubling to 5 s.
    public mutating func pause(reason: Int32 = ENOSPC) {
        let now = monotonicSeconds()
        if attempt == 0 {
            started = now
            lastReport = now
            logger.warning(
                "\(path): \(String(cString: strerror(reason))): \(Self.describe(needed)) needed, \(Self.freeSpace(path).map(Self.describe) ?? "unknown") free; waiting for space, retrying (nothing is lost)"
            )
        } else if now - lastReport >= 60 {
            lastReport = now
            logger.warning(
                "\(path): still no space after \(Int(now - started)) s: \(Self.describe(needed)) needed, \(Self.freeSpace(path).map(Self.describe) ?? "unknown") free; waiting"
            )
        }
        attempt += 1
        sleep(seconds: Self.backoff.delay(attempt: attempt))
    }

    /// Logs that the wait is over, when there was one.
    public func resumed() {
        guard attempt > 0 else { return }
        let waited = monotonicSeconds() - started
        logger.notice("\(path): space is back, resumed after \(waited < 1 ? "\(Int(waited * 1000)) ms" : "\(Int(waited)) s")")
    }

    /// Bytes available to an unprivileged writer on the file system holding `path` (or its folder).
    public static func freeSpace(_ path: String) -> Int? {
        var candidate = path
        while true {
            var fs = statvfs()
            if statvfs(candidate, &fs) == 0 { return Int(fs.f_bavail) * Int(fs.f_frsize) }
            guard let slash = candidate.lastIndex(of: "/"), slash != candidate.startIndex else {
                return statvfs(candidate.hasPrefix("/") ? "/" : ".", &fs) == 0 ? Int(fs.f_bavail) * Int(fs.f_frsize) : nil
            }
            candidate = String(candidate[..<slash])
        }
    }

    static func describe(_ bytes: Int) -> String {
        if bytes < 1024 { return "\(bytes) B" }
        if bytes < 1 << 20 { return "\((bytes + 1023) / 1024) KiB" }
        return "\((bytes + (1 << 20) - 1) >> 20) MiB"
    }
}

/// Runs `operation`; while it throws for lack of space (``DiskSpaceWait/isOutOfSpace(_:)``),
/// waits and runs it again, logging under the process's stage (``LineLogHandler/stage``) unless
/// given a logger. `operation` must be safe to repeat (write a temporary file from the
/// start, rename, link); for a stream, use ``writeAllWaitingForSpace(_:_:path:logger:)``.
public func waitingForSpace<R>(
    at path: String, needing bytes: Int, logger: Logger = Logger(label: LineLogHandler.stage), _ operation: () throws -> R
) throws -> R {
    var wait = DiskSpaceWait(path: path, needed: bytes, logger: logger)
    while true {
        do {
            let result = try operation()
            wait.resumed()
            return result
        } catch let error as SystemError where DiskSpaceWait.isOutOfSpace(errno: error.errno) {
            wait.pause(reason: error.errno)
        }
    }
}

/// ``writeAll(_:_:)`` that waits out a full disk and goes on from the byte it stopped at, so the
/// file ends up with every byte once. Errors name `path`.
public func writeAllWaitingForSpace(
    _ fd: Int32, _ raw: UnsafeRawBufferPointer, path: String, logger: Logger = Logger(label: LineLogHandler.stage)
) throws {
    var wait = DiskSpaceWait(path: path, needed: raw.count, logger: logger)
    try writeAll(fd, raw, path: path) { wait.pause(reason: $0) }
    wait.resumed()
}
