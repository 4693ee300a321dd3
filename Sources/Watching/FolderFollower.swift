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
            let names = try folder.candidateNames()
            logger.info("Reading \(folder.path) once: \(names.count) files")
            var deferred = Set<String>()
            _ = try catchUp(deferOpenFiles: false).run(names: names, deferred: &deferred)
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

    func catchUp(deferOpenFiles: Bool) -> CatchUp {
        CatchUp(folder: folder, feed: feed, journal: journal, stop: stop, logger: logger, deferOpenFiles: deferOpenFiles)
    }

    #if os(Linux)
    private func followEvents() throws {
        // The watch goes in before the listing: a file arriving in between is in one or the other.
        let events = try DirectoryEvents(path: folder.path)
        let names = try folder.candidateNames()
        logger.info("Watching \(folder.path) (inotify): \(names.count) files pending")
        var deferred = Set<String>()
        guard try catchUp(deferOpenFiles: true).run(names: names, deferred: &deferred) else { return }

        var fds = [
            pollfd(fd: events.fileDescriptor, events: Int16(POLLIN), revents: 0),
            pollfd(fd: stop?.fileDescriptor ?? -1, events: Int16(POLLIN), revents: 0),
        ]
        while stop?.isRequested != true {
            fds[0].revents = 0
            fds[1].revents = 0
            let n = poll(&fds, nfds_t(fds.count), -1)
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("poll", errno: errno)
            }
            for event in try events.read() {
                if stop?.isRequested == true { return }
                switch event {
                case .completed(let name):
                    deferred.remove(name)
                    guard folder.selection.matches(name) else { continue }
                    try feed.send(name: name, in: folder)
                case .created(let name):
                    guard folder.selection.matches(name) else { continue }
                    // Still open for writing: its IN_CLOSE_WRITE will complete it.
                    if isOpenForWriting(path: folder.path + "/" + name) == true {
                        deferred.insert(name)
                        continue
                    }
                    try feed.send(name: name, in: folder)
                case .overflow:
                    logger.warning("inotify queue overflowed: rescanning \(folder.path)")
                    guard try catchUp(deferOpenFiles: true).run(names: try folder.candidateNames(), deferred: &deferred)
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
        let names = try folder.candidateNames()
        follower.logger.info(
            "Watching \(folder.path) (polling every \(intervalMilliseconds) ms): \(names.count) files pending")
        var deferred = Set<String>()
        guard try follower.catchUp(deferOpenFiles: false).run(names: names, deferred: &deferred) else { return }

        // What each not-yet-sent name looked like at the previous scan.
        var previous: [String: FileVersion] = [:]
        // Names already reported as skipped or unreadable, so each scan does not repeat them.
        var reported = Set<String>()
        while true {
            if let stop = follower.stop {
                if stop.wait(milliseconds: Int32(clamping: intervalMilliseconds)) { return }
            } else {
                usleep(useconds_t(clamping: intervalMilliseconds * 1000))
            }
            var scanned: [String: FileVersion] = [:]
            let names: [String]
            do {
                names = try folder.candidateNames()
            } catch let error as SystemError where error.errno == ENOENT {
                throw FolderGone(path: folder.path, reason: "the folder was deleted")
            }
            for name in names {
                if follower.stop?.isRequested == true { return }
                switch folder.inspect(name) {
                case .file(let identity):
                    reported.remove(name)
                    if feed.alreadySent(name, identity) { continue }
                    if previous[name] == identity {
                        try feed.send(name: name, in: folder)
                    } else {
                        scanned[name] = identity
                    }
                case .skip, .failure:
                    if reported.insert(name).inserted { try feed.send(name: name, in: folder) }
                }
            }
            previous = scanned
        }
    }
}
