import ArgumentParser
import CommandLineDialect
import Ingest
import Loading
import Logging
import Postgres
import Telemetry

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct Load: ToolCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load the line protocol into PostgreSQL with COPY, exactly once, keeping rejects as dead letters.",
        discussion: """
            Reads records, rejects and end-of-file markers (see docs/protocol.md) on stdin, usually \
            from `watch data/incoming | validate`. A source file is committed only when its end \
            marker arrives: its rows, its rejects and a checkpoint (table, file name, size, \
            SHA-256) go into one transaction, so a file seen again is skipped and a crash at any \
            instant loses or doubles nothing. Records without provenance (from jq, kcat, …) load \
            in batches by size and time; the table's primary key keeps replays from doubling rows.

            The contract (--contract, docs/contracts.md; default: the e-commerce events) names \
            the table, its dead-letter table and its columns. At start-up it is checked against \
            the table's catalog: a contract column the table lacks or whose type the table's \
            cannot hold, a table type load does not write, a NOT NULL column without default the \
            contract leaves out, or a key other than the table's primary key stops load with \
            one line naming the contract file and the column, exit status 64.

            Rejects are written to <bad-records>/<source file>.ndjson (atomically, before the \
            commit) and to the contract's dead-letter table (by default ecommerce_bad_records). A key \
            already in the table becomes a reject "duplicate event_id (already in the table)" \
            (the contract's key); a row the database refuses becomes a reject with the \
            database's message; the rest of the batch commits.

            Connection (highest precedence first): --db (a conninfo or postgresql:// URI); the \
            libpq variables PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE…; the keys \
            POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD from the \
            environment or the --env-file (default ./.env when present). Only when none of these \
            is set, the embedded server of bin/pg ($INGEST_PGDATA, else ./.pgdata), if it was \
            created; else libpq's defaults. A configured server is never replaced by the \
            embedded one, even when it does not answer. The password is never \
            printed. Prefer PGPASSWORD, ~/.pgpass or .env for it: a password inside --db is \
            overwritten in load's argument list at start-up, but other local users could read \
            it in `ps` until then. An unreachable server is retried with backoff, and a silent \
            one (packets dropped) is noticed within ~20 s through libpq keepalives and timeouts \
            that --db may override (docs/postgres.md); a full disk is waited out. A bad --db or \
            --env-file, authentication failures, missing tables and missing privileges stop \
            with one line on stderr and exit status 1.

            Reject threshold: with --max-reject-rate or --max-rejects, a file over the limit (counted \
            when its end marker arrives) commits none of its rows and no dead letters; it moves to \
            <quarantine>/<file> with <file>.reason.json and is checkpointed as quarantined, so the \
            same bytes are not loaded by accident. A fixed file put back into the incoming folder \
            loads. Records without provenance have no file to refuse: the threshold does not apply.

            Metrics: --metrics-listen 127.0.0.1:9187 serves /metrics for Prometheus: rows read, \
            loaded and rejected (by reason), files committed, batches, retries, arrival-to-commit \
            latency, and the backlog and lag that `watch --progress` reports (docs/operations.md).

            Signals: the first SIGINT/SIGTERM does not stop load: it drains its input to the end \
            (the upstream stage stops), commits and exits 0. A second one exits at once (status \
            130); nothing uncommitted is lost, since its files stay in the incoming folder.

            Examples:
              watch data/incoming | validate | load
              validate data/incoming/batch_x.csv | load --keep
              jq -c '.[]' events.json | validate | load --db postgresql://db/shop
            """
    )

    @Option(help: ArgumentHelp("Connection string (conninfo or URI); overrides PG* and POSTGRES_* settings.", valueName: "conninfo"))
    var db: String?

    @Option(
        name: .customLong("env-file"),
        help: ArgumentHelp("Read POSTGRES_* keys from this file (default: ./.env if it exists).", valueName: "path"))
    var envFile: String?

    @OptionGroup var contractOption: ContractOption

    @Option(
        help: ArgumentHelp(
            "Target table (may be schema-qualified), instead of the contract's (its columns must still fit the contract).",
            valueName: "name"))
    var table: String?

    @Option(
        name: .customLong("batch-rows"),
        help: ArgumentHelp("Commit once this many rows of complete files are waiting.", valueName: "n"))
    var batchRows = 10_000

    @Option(
        name: .customLong("max-delay"),
        help: ArgumentHelp(
            "Commit at the latest this long after the oldest waiting row arrived: 250ms, 1.5s, 5m, 1h (a bare number is seconds).",
            valueName: "duration"))
    var maxDelay = DurationArgument(milliseconds: 1000)

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

    @Option(
        name: .customLong("max-reject-rate"),
        help: ArgumentHelp(
            "Refuse a file whose share of rejected rows is over this (0…1): none of its rows load; it moves to --quarantine.",
            valueName: "rate"))
    var maxRejectRate: Double?

    @Option(
        name: .customLong("max-rejects"),
        help: ArgumentHelp("Refuse a file with more rejected rows than this, likewise.", valueName: "n"))
    var maxRejects: Int?

    @Option(
        help: ArgumentHelp(
            "Folder for refused files (reject threshold, or a changed version of a committed file), each with <file>.reason.json.",
            valueName: "dir"))
    var quarantine = "data/quarantine"

    @Option(help: ArgumentHelp("This pipeline's name, recorded in each checkpoint (default: host:pid).", valueName: "name"))
    var name: String?

    @Option(
        name: .customLong("max-retries"),
        help: ArgumentHelp("Give up after this many failed attempts to reach the server (default: keep trying).", valueName: "n"))
    var maxRetries: Int?

    @Option(
        name: .customLong("metrics-listen"),
        help: ArgumentHelp(
            "Serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9187; port 0 picks a free one). Off by default.",
            valueName: "host:port"))
    var metricsListen: String?

    @OptionGroup var log: LogOptions

    func validate() throws {
        if delete && keep { throw ValidationError("--delete and --keep cannot be combined") }
        if let rate = maxRejectRate, !(0...1).contains(rate) { throw ValidationError("--max-reject-rate must be between 0 and 1") }
        if let n = maxRejects, n < 0 { throw ValidationError("--max-rejects must not be negative") }
        if batchRows < 1 { throw ValidationError("--batch-rows must be at least 1") }
        if let listen = metricsListen, MetricsEndpoint.parse(listen: listen) == nil {
            throw ValidationError("--metrics-listen: not HOST:PORT: \(listen) (try 127.0.0.1:9187)")
        }
    }

    func run() throws {
        if let db, let password = ConnectionSettings.password(in: db) {
            ArgumentVector.hide(password, inValueOf: "--db")
        }
        signal(SIGPIPE, SIG_IGN)
        // A bad contract is a usage error: said (exit 64) before anything is connected.
        let contract = try contractOption.contract()
        #if canImport(Glibc)
        // One malloc arena for the reading thread and both commit threads: with an arena per
        // thread, memory one frees is not reused by the others (peak RSS ~0.5 MB higher).
        // -8 is M_ARENA_MAX in malloc.h.
        _ = glibcMallopt(-8, 1)
        #endif
        // In a pipeline Ctrl+C reaches every stage at once: the first signal is ignored here (the
        // source stops, our input ends, the last batch commits); a second one exits at once.
        // From a terminal, the first one exits.
        if isatty(0) == 0 { Interrupts.install(onSecond: .exit(ExitStatus.interrupted.rawValue)) }
        let logger = log.bootstrap(stage: "load")

        // One resolution for every tool that connects (consume too): a setting that cannot
        // work exits 1 here, naming its key, instead of being retried or replaced.
        let resolved: ResolvedConnection
        let conninfo: String
        do {
            resolved = try ConnectionSettings.resolve(db: db, envFile: envFile)
            // Bounded detection of a silent server, unless the user chose other timeouts.
            conninfo = try ConnectionSettings.withDeadServerDefaults(resolved.settings.conninfo)
        } catch {
            throw RuntimeError("\(error)")
        }
        let settings = resolved.settings
        var config = LoaderConfiguration(conninfo: conninfo, endpoint: settings.redactedDescription)
        config.contract = contract
        config.table = table ?? config.contract.table.description
        config.badRecordsTable = config.contract.deadLetterTable.description
        config.batchRows = batchRows
        config.maxDelay = maxDelay.seconds
        config.incoming = ContainedFolder(incoming)
        config.badRecords = ContainedFolder(badRecords)
        config.afterCommit = delete ? .delete : keep ? .keep : .archive(ContainedFolder(archive))
        config.maxRetries = maxRetries
        config.unreachableHint = StartupHints(resolved: resolved, db: db, envFile: envFile).hint
        config.rejectThreshold = RejectThreshold(maxRate: maxRejectRate, maxRejects: maxRejects)
        config.quarantine = Quarantine(ContainedFolder(quarantine))
        var endpoint: MetricsEndpoint?
        if let metricsListen {
            do {
                endpoint = try MetricsEndpoint(listen: metricsListen, metrics: config.metrics, logger: logger)
                logger.info("metrics at \(endpoint!.url)")
            } catch  where getenv("INGEST_METRICS_BEST_EFFORT").map({ String(cString: $0) }) == "1" {
                // bin/pipeline's default address, not the user's choice: another job may have
                // taken the port between its probe and this bind. Loading matters more.
                logger.warning("\(error); metrics off for this run")
            } catch {
                logger.critical("\(error)")
                throw ExitCode(ExitStatus.failure.rawValue)
            }
        }
        defer { endpoint?.stop() }
        if let name { config.pipeline = name }

        let loader = Loader(config: config, logger: logger)
        logger.info("connecting to \(settings.redactedDescription) (\(resolved.source))")
        logger.info("reading stdin, writing to \(config.table) at \(settings.redactedDescription)")
        // Each failure is logged once, in the log format, then exits quietly with its code.
        do {
            try loader.run(fd: 0)
        } catch let mismatch as ContractMismatch {
            logger.critical("\(mismatch.description)")
            throw ExitCode(ExitStatus.usage.rawValue)
        } catch LoaderError.interrupted(let endpoint) {
            logger.info("interrupted while waiting for \(endpoint); nothing was read or committed")
            throw ExitCode(ExitStatus.interrupted.rawValue)
        } catch let error as LoaderError {
            logger.critical("\(error.description)")
            throw ExitCode(ExitStatus.failure.rawValue)
        } catch let error as SystemError {
            logger.critical("\(error.description)")
            throw ExitCode(ExitStatus.failure.rawValue)
        }
        let t = loader.totals
        logger.info(
            "done: \(t.rowsLoaded) rows loaded, \(t.rowsRejected) rejected, \(t.filesCommitted) files committed, \(t.filesQuarantined) quarantined, \(t.filesSkipped) skipped as already committed, \(t.batches) batches"
        )
    }
}

#if canImport(Glibc)
/// glibc's `mallopt` (malloc.h is not part of the Glibc module).
@_silgen_name("mallopt")
private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif
