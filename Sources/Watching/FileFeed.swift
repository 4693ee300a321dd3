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
    /// Names whose skip was logged: each is logged once, however often it is seen again.
    private var skipsLogged: Set<String> = []
    /// Set (by `watch --progress`) to write a `progress` line before each file sent.
    public var backlog: FolderBacklog?
    /// With `--shared`: a file is read only once this pipeline holds its claim.
    public var claims: FileClaims?
    /// Reads abandoned because the file changed under them.
    public private(set) var abandoned = 0
    /// When a file of a folder counts as complete (nil: as soon as it looks complete).
    public var settle: SettleRule?
    /// Files held by `settle`, with when (wall-clock ms) to look at each again.
    public private(set) var held: [String: Int64] = [:]

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
        backlog?.remove(name)
    }

    /// Logs, once per name, that `name` in `folder` is not read, and why.
    public func logSkip(_ name: String, in folder: WatchedFolder, why: String) {
        guard skipsLogged.insert(name).inserted else { return }
        logger.info("Skipping \(folder.path(of: name)): \(why)")
    }

    /// Logs, once per name, a name the selection leaves out (dot-file, temporary, other pattern,
    /// sub-folder).
    public func logNotSelected(_ name: String, in folder: WatchedFolder, isDirectory: Bool = false) {
        guard !skipsLogged.contains(name) else { return }
        var st = stat()
        let directory = isDirectory || (lstat(folder.path(of: name), &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR)
        guard let why = folder.selection.reasonNotSelected(name, isDirectory: directory) else { return }
        logSkip(name, in: folder, why: why)
    }

    /// Counts `names` as pending (complete, not sent yet) and reports the backlog downstream.
    public func announce(_ names: [String], in folder: WatchedFolder) throws {
        guard let backlog else { return }
        for name in names {
            if case .file(let identity) = folder.inspect(name), !alreadySent(name, identity) {
                backlog.add(name, identity)
            }
        }
        try reportProgress()
    }

    /// Writes a `progress` line with the current backlog (with `--progress` only) and flushes it.
    public func reportProgress() throws {
        guard let backlog else { return }
        LineEncoder.appendProgress(backlog.progress, into: &output.bytes)
        try output.flush()
    }

    /// Sends a file of a watched folder, unless this version was already sent.
    ///
    /// The identity is taken before reading: if the file is replaced while being read, the
    /// new version's event does not match it and is sent again (a duplicate that `load`'s
    /// checkpoint drops), never lost.
    /// Only `BrokenPipe` (and write errors on stdout) are thrown; a file that cannot be read
    /// is an error line and the stream goes on. False when the file changed while being read
    /// (its lines were abandoned): the caller sends it again once its writer is done.
    @discardableResult
    public func send(name: String, in folder: WatchedFolder, force: Bool = false) throws -> Bool {
        switch folder.inspect(name) {
        case .skip(let why):
            backlog?.remove(name)
            logSkip(name, in: folder, why: why)
        case .failure(let error):
            backlog?.remove(name)
            report(error, path: folder.path(of: name))
        case .file(let identity):
            if !force && alreadySent(name, identity) { return true }
            if let settle, let hold = settle.hold(path: folder.path(of: name), version: identity, nowMilliseconds: wallClockMilliseconds())
            {
                if held.updateValue(hold.until, forKey: name) == nil { logger.info("Holding \(folder.path(of: name)): \(hold.why)") }
                return true
            }
            held[name] = nil
            if let claims {
                do {
                    switch try claims.claim(name, version: identity) {
                    case .heldBy(let other):
                        logger.debug("\(folder.path(of: name)): claimed by pipeline \(other)")
                        return true
                    case .claimed(let previous?):
                        logger.warning("\(folder.path(of: name)): taken over from pipeline \(previous) (its lease expired)")
                    case .claimed(nil):
                        break
                    }
                } catch let error as SystemError {
                    // A claim that cannot be written: reading the file anyway risks only
                    // duplicate work (load's checkpoint keeps it exactly once), never a loss.
                    logger.warning("cannot claim \(folder.path(of: name)): \(error); reading it anyway")
                }
            }
            sent[name] = identity
            defer { beatIfDue() }
            if let backlog {
                // Before the file's rows: downstream holds this file itself from its first line on.
                backlog.remove(name)
                LineEncoder.appendProgress(backlog.progress, into: &output.bytes)
            }
            if try !send(path: folder.path(of: name), name: name) {
                sent[name] = nil
                return false
            }
        }
        return true
    }

    /// How long until a held file is due (ms, at least 10), for a follower's wait; nil: none held.
    public var heldWaitMilliseconds: Int32? {
        held.values.min().map { Int32(clamping: max(10, $0 - wallClockMilliseconds())) }
    }

    /// Sends each held file whose time has come (looked at again: one still changing is held
    /// longer), until a stop is asked for.
    public func sendDue(in folder: WatchedFolder, stop: StopSignal?) throws {
        let now = wallClockMilliseconds()
        for (name, due) in held.sorted(by: { $0.value < $1.value }) where due <= now {
            if stop?.isRequested == true { return }
            held[name] = nil
            if try !send(name: name, in: folder) { held[name] = now + (settle?.settleMilliseconds ?? 1000) }
        }
    }

    /// Sends a file named on the command line (no de-duplication: the user asked for it).
    /// False when it changed while being read (an `abandon` line went out instead of its marker).
    @discardableResult
    public func send(path: String, name: String) throws -> Bool {
        let started = monotonicMilliseconds()
        let seen = UTCTimestamp.now()
        do {
            let result = try emitter.emit(path: path, name: name, seen: seen, into: output)
            try output.flush()
            if result.changedWhileReading {
                abandoned += 1
                logger.warning(
                    "\(path) changed while being read (a writer is still at it): its rows are abandoned and it is read again whole")
                return false
            }
            filesSent += 1
            rowsSent += result.marker.rows
            let ms = monotonicMilliseconds() - started
            logger.info(
                "Emitted \(name): \(result.marker.rows) rows (\(result.records) records, \(result.rejects) rejects), \(result.marker.bytes) bytes in \(ms) ms"
            )
            if let problem = result.fileProblem {
                logger.warning("\(path): \(problem)")
            }
            if !result.ignoredColumns.isEmpty {
                logger.info(
                    "\(path): columns not in the contract, not carried: \(result.ignoredColumns.joined(separator: ", "))")
            }
        } catch let error as SystemError {
            // Lines already written for this file have no marker, so `load` never commits them.
            try output.flush()
            report(error, path: path)
        }
        return true
    }

    private var lastBeat: Int64 = 0

    /// Between files too, not only when the follower is idle: a long catch-up must not look
    /// like a dead pipeline to the others.
    private func beatIfDue() {
        guard let claims else { return }
        let now = monotonicMilliseconds()
        guard now - lastBeat >= claims.leaseMilliseconds / 3 else { return }
        lastBeat = now
        try? claims.beat()
    }

    private func report(_ error: SystemError, path: String) {
        failures += 1
        logger.error("\(path): \(String(cString: strerror(error.errno)))")
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
        try feed.announce(names, in: folder)
        defer { try? feed.reportProgress() }
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
