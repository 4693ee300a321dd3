import ArgumentParser
import Ingest
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `--log-level`, shared by every tool.
public struct LogOptions: ParsableArguments {
    @Option(
        name: .customLong("log-level"),
        help: ArgumentHelp(
            "The least severe messages logged (default: $INGEST_LOG_LEVEL, else info).",
            valueName: "level"))
    public var level: LogLevel?

    public init() {}

    /// Bootstraps swift-log once for the tool: lines on stderr naming `stage`
    /// (`2024-01-30 10:15:23 - load - INFO - …`), at the level asked for, else
    /// `INGEST_LOG_LEVEL`, else `fallback`.
    @discardableResult
    public func bootstrap(stage: String, fallback: Logger.Level = .info) -> Logger {
        var chosen = fallback
        if let raw = getenv("INGEST_LOG_LEVEL"), let parsed = Logger.Level(rawValue: String(cString: raw).lowercased()) {
            chosen = parsed
        }
        LineLogHandler.bootstrap(stage: stage, level: level?.loggerLevel ?? chosen)
        return Logger(label: stage)
    }
}

/// swift-log's levels, as `--log-level` spells them.
public enum LogLevel: String, CaseIterable, ExpressibleByArgument, Sendable {
    case trace, debug, info, notice, warning, error, critical

    public var loggerLevel: Logger.Level { Logger.Level(rawValue: rawValue) ?? .info }
}
