import Loading
import ArgumentParser
import Ingest
import Logging
import Postgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load the line protocol into PostgreSQL with COPY, exactly once, keeping rejects as dead letters.",
        discussion: """
            Reads records, rejects and end-of-file markers (see docs/protocol.md) on stdin, usually \
            from `watch data/incoming | validate`. A source file is committed only when its end \
            marker arrives: its rows, its rejects and a checkpoint (file name, size, SHA-256) go \
            into one transaction, so a file seen again is skipped and a crash at any instant loses \
            or doubles nothing. Records without provenance (from jq, kcat, …) load in batches by \
            size and time; the event_id primary key keeps replays from doubling rows.

            Rejects are written to <bad-records>/<source file>.ndjson (atomically, before the \
            commit) and to the table ecommerce_bad_records. An event_id already in the table \
            becomes a reject "duplicate event_id (already loaded)"; a row the database refuses \
            becomes a reject with the database's message; the rest of the batch commits.

            Connection (highest precedence first): --db (a conninfo or postgresql:// URI); the \
            libpq variables PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE…; the keys \
            POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD from the \
            environment or the --env-file (default ./.env when present). The password is never \
            printed. An unreachable server is retried with backoff; authentication failures, \
            missing tables and missing privileges stop with one line and exit status 1.

            Signals: the first SIGINT/SIGTERM does not stop load: it drains its input to the end \
            (the upstream stage stops), commits and exits 0. A second one exits at once (status \
            130); nothing uncommitted is lost, since its files stay in the incoming folder.

            Examples:
              watch data/incoming | validate | load
              validate data/incoming/batch_x.csv | load --keep
              jq -c '.[]' events.json | validate | load --db 'postgresql://loader@db/ecommerce'
            """
    )

    @Option(help: ArgumentHelp("Connection string (conninfo or URI); overrides PG* and POSTGRES_* settings.", valueName: "conninfo"))
    var db: String?

    @Option(name: .customLong("env-file"), help: ArgumentHelp("Read POSTGRES_* keys from this file (default: ./.env if it exists).", valueName: "path"))
    var envFile: String?

    @Option(help: "Target table (may be schema-qualified).")
    var table = "ecommerce_events"

    @Option(name: .customLong("batch-rows"), help: "Commit once this many rows of complete files are waiting.")
    var batchRows = 20_000

    @Option(name: .customLong("max-delay"), help: ArgumentHelp("Commit at the latest this long after the oldest waiting row arrived (e.g. 500ms, 2s).", valueName: "duration"))
    var maxDelay = "1s"

    @Option(help: ArgumentHelp("The folder the source files are in (archived, deleted or journaled after commit).", valueName: "dir"))
    var incoming = "data/incoming"

    @Option(name: .customLong("bad-records"), help: ArgumentHelp("Folder for dead-letter files.", valueName: "dir"))
    var badRecords = "data/bad_records"

    @Option(help: ArgumentHelp("Move committed source files into this folder.", valueName: "dir"))
    var archive = "data/processed"

    @Flag(help: "Delete committed source files instead of archiving them.")
    var delete = false

    @Flag(help: "Leave committed source files in place; record them in <incoming>/.ingest-committed so watch skips them on restart.")
    var keep = false

    @Option(name: .customLong("max-retries"), help: "Give up after this many failed attempts to reach the server (default: keep trying).")
    var maxRetries: Int?

    @Flag(name: .shortAndLong, help: "Log each file's details too (debug level).")
    var verbose = false

    func validate() throws {
        if delete && keep { throw ValidationError("--delete and --keep cannot be combined") }
        if batchRows < 1 { throw ValidationError("--batch-rows must be at least 1") }
        if parseDuration(maxDelay) == nil { throw ValidationError("--max-delay: not a duration: \(maxDelay) (try 500ms, 2s, 1m)") }
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        // In a pipeline Ctrl+C reaches every stage at once: the first signal is ignored here (the
        // source stops, our input ends, the last batch commits); a second one exits at once.
        // From a terminal, the first one exits.
        if isatty(0) == 0 { Interrupts.install(onSecond: .exit(130)) }
        LineLogHandler.bootstrap(level: verbose ? .debug : .info)
        let logger = Logger(label: "load")

        var env = envFile
        if env == nil && access(".env", R_OK) == 0 { env = ".env" }
        let settings: ConnectionSettings
        do {
            settings = try ConnectionSettings(db: db, envFile: env)
        } catch {
            throw CleanExit.message("load: \(error)")
        }
        var config = LoaderConfiguration(conninfo: settings.conninfo, endpoint: settings.redactedDescription)
        config.table = table
        config.batchRows = batchRows
        config.maxDelay = parseDuration(maxDelay) ?? 1
        config.incoming = ContainedFolder(incoming)
        config.badRecords = ContainedFolder(badRecords)
        config.afterCommit = delete ? .delete : keep ? .keep : .archive(ContainedFolder(archive))
        config.maxRetries = maxRetries

        let loader = Loader(config: config, logger: logger)
        logger.info("load: reading stdin, writing to \(table) at \(settings.redactedDescription)")
        do {
            try loader.run(fd: 0)
        } catch let error as LoaderError {
            logger.critical("\(error.description)")
            Foundation_exit(1)
        } catch let error as SystemError {
            logger.critical("\(error.description)")
            Foundation_exit(1)
        }
        let t = loader.totals
        logger.info(
            "load: done: \(t.rowsLoaded) rows loaded, \(t.rowsRejected) rejected, \(t.filesCommitted) files committed, \(t.filesSkipped) skipped as already committed, \(t.batches) batches")
    }
}

func Foundation_exit(_ code: Int32) -> Never { exit(code) }

/// Parses `500ms`, `2s`, `1.5s`, `1m`, `0`; nil when not a duration.
func parseDuration(_ text: String) -> Double? {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
        if let v = Double(text.dropLast(suffix.count)), v >= 0 { return v * scale }
    }
    if let v = Double(text), v >= 0 { return v }
    return nil
}
