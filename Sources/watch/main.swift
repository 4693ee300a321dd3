import ArgumentParser
import CommandLineDialect
import Ingest
import Logging
import Watching

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct FollowOptions: ParsableArguments {
    @Flag(help: "Send the files already in the folder, then exit (batch mode).")
    var once = false

    @Option(
        name: .customLong("poll"),
        help: ArgumentHelp(
            "Rescan the folder this often instead of using inotify: 250ms, 1.5s, 5m, 1h (a bare number is seconds).",
            valueName: "duration"))
    var pollInterval: DurationArgument?

    @Option(help: ArgumentHelp("Which names are input files (fnmatch pattern).", valueName: "pattern"))
    var glob = "*.csv"

    @Flag(
        help: ArgumentHelp(
            "Before each file, write a progress line: files and bytes still pending in the folder, and the oldest one's time (load reports them as metrics)."
        ))
    var progress = false

    @Option(
        name: .customLong("writer-wait"),
        help: ArgumentHelp(
            "With --once: how long to wait for a file still open for writing before leaving it for the next run.",
            valueName: "duration"))
    var writerWait = DurationArgument(milliseconds: 30_000)

    @Option(
        help: ArgumentHelp(
            "Hold a file whose last byte is not a newline until it has been unchanged this long (0: do not hold).",
            valueName: "duration"))
    var settle = DurationArgument(milliseconds: SettleRule.defaultSettleMilliseconds)

    @Option(
        name: .customLong("min-age"),
        help: ArgumentHelp(
            "Hold every file until it has been unchanged this long, for writers that close between rows.",
            valueName: "duration"))
    var minAge = DurationArgument(milliseconds: 0)
}

struct ShareOptions: ParsableArguments {
    @Flag(help: "Several pipelines follow this folder: claim each file (in DIR/.claims) before reading it.")
    var shared = false

    @Option(help: ArgumentHelp("This pipeline's name, for claims; give load the same one (default: host:pid).", valueName: "name"))
    var name: String?

    @Option(
        help: ArgumentHelp(
            "With --shared: a pipeline silent this long is presumed dead and its claimed files are taken over.",
            valueName: "duration"))
    var lease = DurationArgument(milliseconds: 30_000)
}

struct JournalOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Journal of files already committed by `load --keep` (default: DIR/\(CommittedJournal.defaultName)).",
            valueName: "path"))
    var journal: String?

    @Flag(help: "Do not read the committed-files journal: send every file in the folder.")
    var noJournal = false
}

struct Watch: ToolCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Stream the rows of CSV files as line-protocol JSON: files in a folder, then each new one as it arrives.",
        discussion: """
            Each file becomes one `record` line per row (or a `reject` for a row that cannot be \
            read), then an `eof` marker with the file's rows, bytes, SHA-256 and when it was \
            seen complete. stdout carries data only and is flushed after every marker; logs go \
            to stderr. The provenance `file` is the file's name within its folder.

            The header is mapped through the table's contract (--contract, docs/contracts.md): \
            each cell goes out under its column's name; columns the contract does not read are \
            not carried (logged once per file). A header without a column the contract needs \
            refuses the file whole: one reject with the header, and a marker whose `refused` \
            says why, so that load quarantines it.

            FOLLOWING A FOLDER
            On start, watch sends every matching file already in DIR, in byte order of names \
            (gen's timestamped names sort oldest first), then follows DIR and sends each new \
            file as soon as it is complete: renamed into DIR (write a hidden temp name, then \
            rename, as gen does) or written in place and closed. inotify is set up before DIR \
            is listed, so no file slips in between. A name is sent again only when it is \
            replaced by a new version (load's checkpoint drops identical content). \
            --poll DURATION rescans instead (macOS, NFS, SMB): a file counts as complete when \
            its size and mtime are unchanged across two scans. \
            --once applies the same rule: a file still open for writing is waited for (up to \
            --writer-wait, default 30s) or left for the next run with a warning. A file that \
            changes while it is read is abandoned (load drops its rows) and read again whole. \
            A file whose last byte is not a newline is almost always still being written (a \
            writer that closes and reopens it, or writes it in two parts): it is held until it \
            has been unchanged for --settle (default 5s), then read whole; a finished writer's \
            file without a final newline loads after that wait. --min-age DURATION holds every \
            file until it is that old, for writers that close between rows.

            WHICH FILES
            Names matching --glob (default *.csv). Never read: dot-files, *.tmp, *.part, *~, \
            directories, FIFOs and other non-regular files, symlinks leading outside DIR \
            (each skip is logged once per name, at info level, with the reason; other \
            extensions, upper-case .CSV and sub-folders too). A file that cannot be read gets \
            one ERROR line on stderr (DIR/x.csv: Permission denied) and the stream goes \
            on; with --once or FILE arguments watch then exits 1 at the end.

            PROGRESS
            With --progress, a progress line goes out after the listing and before each file \
            of a folder: the files found complete and not sent yet, their bytes, and the oldest \
            one's modification time, as {"kind":"progress","files_pending":2,"bytes_pending":8100,…}. \
            validate passes it through; load turns it into its backlog and lag metrics \
            (docs/protocol.md, docs/operations.md).

            MANY PIPELINES, ONE FOLDER
              --shared: several pipelines (on one machine, or several sharing DIR
              over NFS) split the files. Before reading a file, watch claims it in
              DIR/.claims/FILE (one pipeline wins); load removes the claim when it
              archives the file. Each pipeline marks itself alive in
              DIR/.claims/.pipelines/NAME; the files of a pipeline silent for
              --lease (default 30s) are taken over by the others. Give watch and
              load the same --name.

            RESTARTS
            Normally load archives committed files to data/processed/, so DIR holds only \
            pending files and a restart sends exactly those. When load runs with --keep it \
            appends one line per committed file to DIR/.ingest-committed \
            ({"file":"batch_….csv","bytes":4321,"sha256":"…"}); on start watch skips each \
            file whose name, size and SHA-256 match an entry (hashing is far cheaper than \
            parsing and loading) and logs how many it skipped. --journal PATH reads another \
            journal; --no-journal sends everything.

            STOPPING
            Ctrl+C reaches every stage of a pipeline at once. On the first SIGINT or SIGTERM \
            watch finishes the file it is on (its marker written and flushed), starts no \
            other, and exits 0, so load can commit it. A second signal exits at once (130).

            EXIT STATUS
            0 done or stopped; 1 a file could not be read (--once / FILE mode) or DIR went \
            away; 64 usage error. A closed stdout (| head) exits 0 quietly.

            Scripts must call it by path (.build/release/watch): procps also has a `watch`.

            EXAMPLES
              watch data/incoming | validate | load
              watch --once bad.csv | validate --summary
              watch --once data/incoming > backlog.jsonl
              watch --poll 2s /mnt/share/incoming | validate | load
              watch --glob 'orders_*.csv' --no-journal data/incoming
            """)

    @Argument(
        help: ArgumentHelp(
            "Folders to follow, or CSV files to replay in the order given (files first, then the folder).",
            valueName: "dir-or-file"))
    var paths: [String]

    @OptionGroup var follow: FollowOptions
    @OptionGroup var journalOptions: JournalOptions
    @OptionGroup var share: ShareOptions

    @OptionGroup var contractOption: ContractOption
    @OptionGroup var log: LogOptions

    func validate() throws {
        guard !paths.isEmpty else { throw ValidationError("Give a folder to watch or CSV files to read.") }
        var folders = 0
        for path in paths {
            var st = stat()
            guard stat(path, &st) == 0 else {
                throw ValidationError("\(path): \(String(cString: strerror(errno)))")
            }
            if (st.st_mode & S_IFMT) == S_IFDIR { folders += 1 }
        }
        if folders > 1 && !follow.once {
            throw ValidationError("Only one folder can be followed; use --once to read several.")
        }
        if journalOptions.noJournal && journalOptions.journal != nil {
            throw ValidationError("--journal and --no-journal cannot be used together.")
        }
        guard share.lease.milliseconds >= 100 else {
            throw ValidationError("--lease: '\(share.lease)' is shorter than 100ms.")
        }
        if share.name != nil && !share.shared {
            throw ValidationError("--name only applies with --shared.")
        }
        if let interval = follow.pollInterval {
            guard interval.milliseconds > 0 else { throw ValidationError("--poll must be longer than 0.") }
            if follow.once || folders == 0 {
                throw ValidationError("--poll only applies when following a folder (not with --once or files only).")
            }
        }
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        let logger = log.bootstrap(stage: "watch")
        let stop = try StopSignal.install()
        let contract = try contractOption.contract()
        let feed = FileFeed(output: ByteOutput(fd: 1), emitter: CSVFileEmitter(contract: contract), logger: logger)
        if follow.progress { feed.backlog = FolderBacklog() }
        feed.settle = SettleRule(settleMilliseconds: follow.settle.milliseconds, minAgeMilliseconds: follow.minAge.milliseconds)

        var files: [String] = []
        var folders: [String] = []
        for path in paths {
            var st = stat()
            if stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
                folders.append(path)
            } else {
                files.append(path)
            }
        }
        do {
            for path in files {
                if stop.isRequested { break }
                let name = path.split(separator: "/").last.map(String.init) ?? path
                try feed.send(path: path, name: name)
            }
            let mode: FollowMode =
                follow.once ? .once : follow.pollInterval.map { .poll(milliseconds: max(10, Int($0.milliseconds))) } ?? .events
            for path in folders {
                if stop.isRequested { break }
                let folder = try WatchedFolder(path: path, selection: FileSelection(glob: follow.glob))
                var journal: [String: FileFingerprint] = [:]
                if !journalOptions.noJournal {
                    let journalPath = journalOptions.journal ?? folder.path(of: CommittedJournal.defaultName)
                    journal = try CommittedJournal(path: journalPath).load()
                    if !journal.isEmpty {
                        logger.info("Journal \(journalPath): \(journal.count) committed files")
                    }
                }
                if share.shared {
                    feed.claims = FileClaims(
                        folder: folder.path, pipeline: share.name ?? defaultPipelineName(),
                        leaseMilliseconds: share.lease.milliseconds)
                }
                let follower = FolderFollower(
                    folder: folder, feed: feed, journal: journal, mode: mode, stop: stop, logger: logger)
                follower.writerWaitMilliseconds = Int(follow.writerWait.milliseconds)
                try follower.run()
            }
        } catch is BrokenPipe {
            return
        } catch let error as FolderGone {
            logger.error("\(error)")
            throw ExitCode(ExitStatus.failure.rawValue)
        } catch let error as SystemError {
            logger.error("\(error)")
            throw ExitCode(ExitStatus.failure.rawValue)
        }
        if stop.isRequested {
            logger.info("Stopped by signal after \(feed.filesSent) files, \(feed.rowsSent) rows")
        } else {
            logger.info("Done: \(feed.filesSent) files, \(feed.rowsSent) rows")
        }
        if feed.failures > 0 && (follow.once || folders.isEmpty) {
            throw ExitCode(ExitStatus.failure.rawValue)
        }
    }
}

Watch.runAndExit()
