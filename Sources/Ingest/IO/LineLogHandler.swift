import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Logs one line per message to stderr: `2024-01-30 10:15:23 - gen - INFO - Generated batch of 50 events`.
///
/// Python logging's `%(asctime)s - %(name)s - %(levelname)s - %(message)s`, the label naming
/// the stage, since one log file (logs/pipeline.log) mixes several. Written with one `write(2)`
/// per line: lines from several processes sharing a log file never interleave.
public struct LineLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    private let label: String

    public init(label: String, level: Logger.Level = .info) {
        self.label = label
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        writeStandardError(
            Self.line(at: .now(), label: label, level: event.level, message: event.message.description, metadata: merged))
    }

    /// One log line, without its newline: the time in whole seconds (as in the seed's logs), the
    /// label, the level, the message, then the metadata sorted by key (`key=value`).
    public static func line(
        at time: UTCTimestamp, label: String, level: Logger.Level, message: String, metadata: Logger.Metadata = [:]
    ) -> String {
        var out: [UInt8] = []
        time.appendRFC3339(to: &out, separator: UInt8(ascii: " "), zulu: false)
        out.removeLast(4)
        var text = String(decoding: out, as: UTF8.self)
        text += " - \(oneLine(label)) - \(name(level)) - \(oneLine(message))"
        if !metadata.isEmpty {
            text += " " + metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
        return text
    }

    /// Control characters escaped (`\n` → `\\n`): a file name with a newline cannot forge a log line.
    static func oneLine(_ text: String) -> String {
        guard text.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                let hex = String(scalar.value, radix: 16)
                out += "\\x" + (hex.count == 1 ? "0" + hex : hex)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    static func name(_ level: Logger.Level) -> String {
        switch level {
        case .trace: "TRACE"
        case .debug: "DEBUG"
        case .info: "INFO"
        case .notice: "NOTICE"
        case .warning: "WARNING"
        case .error: "ERROR"
        case .critical: "CRITICAL"
        }
    }

    /// Bootstraps swift-log once for a tool, `stage` naming it: every logger writes these lines
    /// to stderr.
    public static func bootstrap(stage: String = "ingest", level: Logger.Level = .info) {
        _stage = stage
        LoggingSystem.bootstrap { LineLogHandler(label: $0, level: level) }
    }

    /// The stage this process is (`load`, `watch`…): the label of loggers made where no stage's
    /// logger is at hand (a disk-space wait deep inside a write). Set by ``bootstrap(stage:level:)``
    /// on the main thread before any other starts, only read after.
    public static var stage: String { _stage }
    nonisolated(unsafe) private static var _stage = "ingest"
}
