import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes `2024-01-30 10:15:23 - INFO - message` lines to stderr, unbuffered.
///
/// Bootstrap once in `main`: `LoggingSystem.bootstrap { StandardErrorLogHandler(label: $0) }`.
public struct StandardErrorLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public let label: String

    public init(label: String, level: Logger.Level = .info) {
        self.label = label
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var text = Self.timestamp() + " - " + event.level.rawValue.uppercased() + " - " + event.message.description
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        if !merged.isEmpty {
            text += " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
        writeStandardError(text)
    }

    /// `2024-01-30 10:15:23`, UTC.
    static func timestamp() -> String {
        var out: [UInt8] = []
        UTCTimestamp.now().appendRFC3339(to: &out, separator: UInt8(ascii: " "), zulu: false)
        return String(decoding: out.prefix(19), as: UTF8.self)
    }
}
