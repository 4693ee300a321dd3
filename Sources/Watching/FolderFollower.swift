import Ingest
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The watched folder went away: nothing more can arrive, so `watch` fails loudly.
public struct FolderGone: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}

/// How a follower learns about new files.
public enum FollowMode: Sendable, Equatable {
    /// inotify (Linux): each file as soon as it is renamed in or closed after writing.
    case events
    /// Rescan every interval; a file is complete when size and mtime hold across two scans.
    case poll(milliseconds: Int)
    /// Send what is there and return.
    case once
}

/// Sends the files already in a folder, oldest name first, then every new one as it completes.
public final class FolderFollower {
    public let folder: WatchedFolder
    public let feed: FileFeed
    public let journal: [String: FileFingerprint]
    public let stop: StopSignal?
    public let logger: Logger
    public let mode: FollowMode
    /// `.once`: how long to wait for the writer of a file still open for writing (or changing
    /// while read) before leaving it for the next run.
    public var writerWaitMilliseconds = 30_000

    public init(
        folder: WatchedFolder, feed: FileFeed, journal: [String: FileFingerprint] = [:],
        mode: FollowMode, stop: StopSignal?, logger: Logger
    ) {
        self.folder = folder
        self.feed = feed
        self.journal = journal
        self.stop = stop
        self.logger = logger
        #if os(Linux)
        self.mode = mode
        #else
        // No inotify here: polling is the portable way to follow a folder.
        self.mode = mode == .events ? .poll(milliseconds: 1000) : mode
        #endif
    }

    /// Runs until the folder is exhausted (`.once`), a stop is asked for, or the folder goes.
    ///
    /// Throws `FolderGone`, `SystemError` for the folder itself, and `BrokenPipe`.
    public func run() throws {
        switch mode {
        case .once:
            try feed.claims?.prepare()
            let names = try listing()
            logger.info("Reading \(folder.path) once: \(names.count) files")
            var deferred = Set<String>()
            guard try catchUp(deferOpenFiles: true).run(names: names, deferred: &deferred) else { return }
            try waitForWriters(&deferred)
            try waitForHeld()
        case .poll(let interval):
            try PollingFollower(follower: self, intervalMilliseconds: interval).run()
        case .events:
            #if os(Linux)
            try followEvents()
            #else
            break
            #endif
        }
    }

    /// The folder's candidate names; every other name's skip is logged (once per name).
    func listing() throws -> [String] {
        try folder.candidateNames { name, isDirectory in
            feed.logNotSelected(name, in: folder, isDirectory: isDirectory)
        }
    }

    /// `--once`: the completeness rule of follow mode, bounded in time. A file still open for
    /// writing is sent once its writer closes it; one still open (or changing) after the wait
    /// is left in the folder for the next run, with a warning.
    private func waitForWriters(_ deferred: inout Set<String>) throws {
        let started = monotonicMilliseconds()
        while !deferred.isEmpty {
            for name in deferred.sorted() {
                if stop?.isRequested == true { return }
                if isOpenForWriting(path: folder.path(of: name)) == true { continue }
                if try feed.send(name: name, in: folder) { deferred.remove(name) }
            }
            if deferred.isEmpty || monotonicMilliseconds() - started >= Int64(writerWaitMilliseconds) { break }
            try? feed.claims?.beat()
            if let stop {
                if stop.wait(milliseconds: 100) { return }
            } else {
                sleep(seconds: 0.1)
            }
        }
        for name in deferred.sorted() {
            logger.warning(
                "Left \(folder.path(of: name)) for the next run: still being written after \(writerWaitMilliseconds / 1000) s")
        }
    }

    /// `--once`: the files held for their settle time or --min-age are waited for, then sent.
    private func waitForHeld() throws {
        let started = monotonicMilliseconds()
        while let wait = feed.heldWaitMilliseconds {
            if monotonicMilliseconds() - started >= Int64(writerWaitMilliseconds) {
                for name in feed.held.keys.sorted() {
                    logger.warning(
                        "Left \(folder.path(of: name)) for the next run: still changing after \(writerWaitMilliseconds / 1000) s")
                }
                return
            }
            if let stop {
                if stop.wait(milliseconds: wait) { return }
            } else {
                sleep(seconds: Double(wait) / 1000)
            }
            try feed.sendDue(in: folder, stop: stop)
            try? feed.claims?.beat()
        }
    }

    func catchUp(deferOpenFiles: Bool) -> CatchUp {
        CatchUp(folder: folder, feed: feed, journal: journal, stop: stop, logger: logger, deferOpenFiles: deferOpenFiles)
    }

    #if os(Linux)
    private func followEvents() throws {
        // The watch goes in before the listing: a file arriving in between is in one or the other.
        let events = try DirectoryEvents(path: folder.path)
        try feed.claims?.prepare()
        let names = try listing()
        logger.info("Watching \(folder.path) (inotify): \(names.count) files pending")
        var deferred = Set<String>()
        guard try catchUp(deferOpenFiles: true).run(names: names, deferred: &deferred) else { return }

        var fds = [
            pollfd(fd: events.fileDescriptor, events: Int16(POLLIN), revents: 0),
            pollfd(fd: stop?.fileDescriptor ?? -1, events: Int16(POLLIN), revents: 0),
            // Our stdout: POLLERR once validate is gone, so an idle watch exits too.
            pollfd(fd: feed.output.fd, events: 0, revents: 0),
        ]
        // Shared folder: beat well within the lease, and rescan once per lease for files
        // another pipeline claimed and then stopped holding (killed: its lease expired).
        let lease = feed.claims?.leaseMilliseconds
        var lastBeat = monotonicMilliseconds()
        var lastRescan = lastBeat
        while stop?.isRequested != true {
            for i in fds.indices { fds[i].revents = 0 }
            let leaseWait = lease.map { Int32(clamping: max(10, $0 / 3)) }
            let wait = [leaseWait, feed.heldWaitMilliseconds].compactMap { $0 }.min() ?? -1
            let n = poll(&fds, nfds_t(fds.count), wait)
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("poll", errno: errno)
            }
            if fds[2].revents & Int16(POLLERR | POLLHUP) != 0 { throw BrokenPipe() }
            try feed.sendDue(in: folder, stop: stop)
            if let lease, let claims = feed.claims {
                let now = monotonicMilliseconds()
                if now - lastBeat >= lease / 3 {
                    try? claims.beat()
                    lastBeat = now
                }
                if now - lastRescan >= lease {
                    lastRescan = now
                    guard try catchUp(deferOpenFiles: true).run(names: try listing(), deferred: &deferred)
                    else { return }
                }
            }
            let batch = try events.read()
            try feed.announce(
                batch.compactMap { if case .completed(let name) = $0, folder.selection.matches(name) { name } else { nil } },
                in: folder)
            for event in batch {
                if stop?.isRequested == true { return }
                switch event {
                case .completed(let name):
                    deferred.remove(name)
                    guard folder.selection.matches(name) else {
                        feed.logNotSelected(name, in: folder)
                        continue
                    }
                    // Changed while read: its writer's next close brings another event.
                    if try !feed.send(name: name, in: folder) { deferred.insert(name) }
                case .directoryCreated(let name):
                    guard folder.selection.matches(name) else {
                        feed.logNotSelected(name, in: folder, isDirectory: true)
                        continue
                    }
                    _ = try feed.send(name: name, in: folder)  // logs why a directory is skipped
                case .created(let name):
                    guard folder.selection.matches(name) else {
                        feed.logNotSelected(name, in: folder)
                        continue
                    }
                    // Still open for writing: its IN_CLOSE_WRITE will complete it.
                    if isOpenForWriting(path: folder.path + "/" + name) == true {
                        deferred.insert(name)
                        continue
                    }
                    try feed.send(name: name, in: folder)
                case .overflow:
                    logger.warning("inotify queue overflowed: rescanning \(folder.path)")
                    guard try catchUp(deferOpenFiles: true).run(names: try listing(), deferred: &deferred)
                    else { return }
                case .folderGone(let reason):
                    throw FolderGone(path: folder.path, reason: reason)
                }
            }
        }
    }
    #endif
}

/// Follows a folder by rescanning it: for filesystems without inotify (macOS, NFS, SMB).
struct PollingFollower {
    let follower: FolderFollower
    let intervalMilliseconds: Int

    func run() throws {
        let folder = follower.folder
        let feed = follower.feed
        let names = try follower.listing()
        follower.logger.info(
            "Watching \(folder.path) (polling every \(intervalMilliseconds) ms): \(names.count) files pending")
        var deferred = Set<String>()
        try feed.claims?.prepare()
        guard try follower.catchUp(deferOpenFiles: false).run(names: names, deferred: &deferred) else { return }

        // What each not-yet-sent name looked like at the previous scan.
        var previous: [String: FileVersion] = [:]
        // Names already reported as skipped or unreadable, so each scan does not repeat them.
        var reported = Set<String>()
        while true {
            if let stop = follower.stop {
                if stop.wait(milliseconds: Int32(clamping: intervalMilliseconds)) { return }
            } else {
                sleep(seconds: Double(intervalMilliseconds) / 1000)
            }
            try? feed.claims?.beat()
            var scanned: [String: FileVersion] = [:]
            let names: [String]
            do {
                names = try follower.listing()
            } catch let error as SystemError where error.errno == ENOENT {
                throw FolderGone(path: folder.path, reason: "the folder was deleted")
            }
            var stable: [String] = []
            for name in names {
                switch folder.inspect(name) {
                case .file(let identity):
                    reported.remove(name)
                    if feed.alreadySent(name, identity) { continue }
                    if previous[name] == identity {
                        stable.append(name)
                    } else {
                        scanned[name] = identity
                    }
                case .skip, .failure:
                    if reported.insert(name).inserted { try feed.send(name: name, in: folder) }
                }
            }
            try feed.announce(stable, in: folder)
            for name in stable {
                if follower.stop?.isRequested == true { return }
                try feed.send(name: name, in: folder)
            }
            previous = scanned
        }
    }
}
