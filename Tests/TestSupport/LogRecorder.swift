import Foundation
import Ingest
import Logging

/// An in-memory log handler: the lines a tool would write to stderr (``LineLogHandler``'s
/// format, through the same ``LineLogHandler/line(at:label:level:message:metadata:)``), kept in
/// order, stamped with a fixed time so a test can pin whole lines.
///
/// Hand ``logger(label:level:)`` to the code under test instead of bootstrapping swift-log,
/// which a test process may do only once. Any thread may log; ``lines`` is a snapshot.
public final class LogRecorder: @unchecked Sendable {
    /// The time on every recorded line: `2024-01-30 10:15:23`.
    public static let time = UTCTimestamp(millisecondsSinceEpoch: 1_706_609_723_000)

    private let lock = NSLock()
    private var recorded: [String] = []  // guarded by lock

    public init() {}

    /// Every line logged so far, oldest first, without newlines.
    public var lines: [String] { lock.withLock { recorded } }

    /// A logger labelled `label` (the stage: `load`, `watch`…) whose lines land here.
    public func logger(label: String, level: Logger.Level = .trace) -> Logger {
        Logger(label: label) { label in Handler(label: label, logLevel: level, recorder: self) }
    }

    fileprivate func append(_ line: String) { lock.withLock { recorded.append(line) } }

    private struct Handler: LogHandler {
        let label: String
        var logLevel: Logger.Level
        var metadata: Logger.Metadata = [:]
        let recorder: LogRecorder

        init(label: String, logLevel: Logger.Level, recorder: LogRecorder) {
            self.label = label
            self.logLevel = logLevel
            self.recorder = recorder
        }

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            recorder.append(
                LineLogHandler.line(
                    at: LogRecorder.time, label: label, level: event.level, message: event.message.description, metadata: merged))
        }
    }
}
