import Ingest
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The files `watch` sends downstream: reads each with `CSVFileEmitter`, flushes after its
/// marker, logs one line per file, and remembers which version of each name went out.
public final class FileFeed {
    public let output: ByteOutput
    public let emitter: CSVFileEmitter
    public let logger: Logger
    /// Per name, the version last sent (or found already committed), so a repeated event for
    /// the same version is not sent twice while a replaced file is.
    public private(set) var sent: [String: FileVersion] = [:]
    /// Counts for the closing log line.
    public private(set) var filesSent = 0
    public private(set) var rowsSent = 0
    public private(set) var failures = 0

    public init(output: ByteOutput, emitter: CSVFileEmitter = CSVFileEmitter(), logger: Logger) {
        self.output = output
        self.emitter = emitter
        self.logger = logger
    }

    /// True when this exact version of `name` was already sent (or skipped as committed).
    public func alreadySent(_ name: String, _ identity: FileVersion) -> Bool {
        sent[name] == identity
    }

    /// Records a version as handled without sending it (already committed downstream).
    public func markHandled(_ name: String, _ identity: FileVersion) {
        sent[name] = identity
    }

    /// Sends a file of a watched folder, unless this version was already sent.
    ///
    /// The identity is taken before reading: if the file is replaced while being read, the
    /// new version's event does not match it and is sent again (a duplicate that `load`'s
    /// checkpoint drops), never lost.
    /// Only `BrokenPipe` (and write errors on stdout) are thrown; a file that cannot be read
    /// is an error line and the stream goes on.
    public func send(name: String, in folder: WatchedFolder, force: Bool = false) throws {
        switch folder.inspect(name) {
        case .skip(let why):
            logger.info("Skipping \(folder.path(of: name)): \(why)")
        case .failure(let error):
            report(error, path: folder.path(of: name))
        case .file(let identity):
            if !force && alreadySent(name, identity) { return }
            sent[name] = identity
            try send(path: folder.path(of: name), name: name)
        }
    }

    /// Sends a file named on the command line (no de-duplication: the user asked for it).
    public func send(path: String, name: String) throws {
        let started = monotonicMilliseconds()
        let seen = UTCTimestamp.now()
        do {
            let result = try emitter.emit(path: path, name: name, seen: seen, into: output)
            try output.flush()
            filesSent += 1
            rowsSent += result.marker.rows
            let ms = monotonicMilliseconds() - started
            logger.info(
                "Emitted \(name): \(result.marker.rows) rows (\(result.records) records, \(result.rejects) rejects), \(result.marker.bytes) bytes in \(ms) ms"
            )
            if let problem = result.fileProblem {
                logger.warning("watch: \(path): \(problem)")
            }
        } catch let error as SystemError {
            // Lines already written for this file have no marker, so `load` never commits them.
            try output.flush()
            report(error, path: path)
        }
    }

    private func report(_ error: SystemError, path: String) {
        failures += 1
        logger.error("watch: \(path): \(String(cString: strerror(error.errno)))")
    }
}


/// Startup work shared by both followers: send what is already in the folder, oldest name
/// first, skipping files the journal says were committed with the same content.
struct CatchUp {
    let folder: WatchedFolder
    let feed: FileFeed
    let journal: [String: FileFingerprint]
    let stop: StopSignal?
    let logger: Logger
    /// Linux only: wait for the writer of a file still open for writing (its IN_CLOSE_WRITE follows).
    let deferOpenFiles: Bool

    /// Files left for their writer to finish; returns false when a stop was asked for.
    func run(names: [String], deferred: inout Set<String>) throws -> Bool {
        var committed = 0
        for name in names {
            if stop?.isRequested == true { return false }
            guard case .file(let identity) = folder.inspect(name) else {
                try feed.send(name: name, in: folder)  // logs the skip or the error
                continue
            }
            if feed.alreadySent(name, identity) { continue }
            if let entry = journal[name], entry.bytes == identity.size,
                let hashed = try? FileDigest.of(path: folder.path(of: name), followingSymlink: true),
                hashed.bytes == entry.bytes, hashed.sha256 == entry.sha256
            {
                feed.markHandled(name, identity)
                committed += 1
                continue
            }
            if deferOpenFiles, isOpenForWriting(path: folder.path(of: name)) == true {
                logger.info("Waiting for \(folder.path(of: name)): still open for writing")
                deferred.insert(name)
                continue
            }
            try feed.send(name: name, in: folder)
        }
        if committed > 0 {
            logger.info("Skipped \(committed) files already committed (journal)")
        }
        return true
    }
}
