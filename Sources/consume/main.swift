import ArgumentParser
import CommandLineDialect
import Consuming
import Ingest
import Kafka
import Logging
import Postgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct Consume: ToolCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read a Kafka topic, in a consumer group or from given partitions, and write its messages as protocol lines.",
        discussion: """
            Each message value is one JSON object with the event's fields (what `gen --stdout` \
            writes). It becomes a record carrying its provenance: "topic", "partition", "offset". \
            A value that is not a JSON object becomes a reject holding the value as "raw"; \
            consume never stops on a message.

            Exactly once: `load` stores each partition's next offset in PostgreSQL (table \
            ingest_kafka_offsets) in the same transaction as the rows. At every partition \
            assignment consume starts the partition at that stored offset — never at Kafka's \
            committed offset — and first writes a line {"kind":"assigned","topic":…, \
            "partition":…,"next_offset":…} so `load` can fence stale batches (see docs/kafka.md). \
            Every --kafka-commit-interval the stored offsets are also committed to the group in \
            Kafka, for the usual lag tools; they are never read back.

            Which partitions: give --group or --partitions. With --group ID, N pipelines with \
            the same group split the partitions, and Kafka moves them when one joins, leaves or \
            dies; a new group's first join waits group.initial.rebalance.delay.ms (3 s by \
            default on a broker). With --partitions LIST (all, or 0,3,5-7) consume reads those \
            partitions and joins no group: no join to wait for, no rebalances, and nothing \
            moves when a pipeline dies. Use it for one pipeline per topic, or for a static \
            split (--partitions 0-11 on one machine, 12-23 on another). Two pipelines given the \
            same partition both read it, and load's commits fence each other: every row is \
            loaded once, none twice. Nothing is committed to Kafka then, unless \
            -X group.id=NAME names a group to commit under.

            Connection to PostgreSQL (to read stored offsets), highest precedence first: --db (a \
            conninfo or postgresql:// URI); PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD…; \
            POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD from the \
            environment or the --env-file (default ./.env when present). The password is never \
            printed.

            Signals: the first SIGINT/SIGTERM stops reading (leaving the group, if any) and exits \
            0 (the rest of the pipeline drains and commits); a second one exits at once (130). \
            A closed stdout exits 0 quietly. Exit status 1: a permanent database or Kafka \
            error; 64: a usage error, also a --partitions number the topic does not have.

            Examples:
              consume --brokers localhost:9092 --topic events --group ingest | validate | load
              gen --stdout --files 10 | kcat -P -b localhost:9092 -t events
              consume --brokers localhost:9092 --topic events --group ingest --lag
              consume --brokers localhost:9092 --topic events --partitions 0-11 \\
                --exit-at-end | validate | load
              consume --brokers b1:9092,b2:9092 --topic events --group ingest \\
                -X security.protocol=SASL_SSL -X sasl.mechanisms=PLAIN
            """
    )

    @Option(help: ArgumentHelp("Bootstrap brokers, comma separated.", valueName: "host:port[,…]"))
    var brokers: String

    @Option(help: ArgumentHelp("The topic to read.", valueName: "name"))
    var topic: String

    @Option(help: ArgumentHelp("The consumer group: pipelines with the same group split the partitions.", valueName: "id"))
    var group: String?

    @Option(help: ArgumentHelp("Read these partitions without joining a group: all, or numbers and ranges (0,3,5-7).", valueName: "list"))
    var partitions: String?

    @Option(
        name: .customShort("X"),
        help: ArgumentHelp("A librdkafka property (repeatable), e.g. -X session.timeout.ms=6000.", valueName: "key=value"))
    var properties: [String] = []

    @Option(help: ArgumentHelp("Connection string (conninfo or URI); overrides PG* and POSTGRES_* settings.", valueName: "conninfo"))
    var db: String?

    @Option(
        name: .customLong("env-file"),
        help: ArgumentHelp("Read POSTGRES_* keys from this file (default: ./.env if it exists).", valueName: "path"))
    var envFile: String?

    @Option(name: .customLong("offsets-table"), help: ArgumentHelp("The table of stored offsets.", valueName: "name"))
    var offsetsTable = "ingest_kafka_offsets"

    @Flag(name: .customLong("exit-at-end"), help: "Exit once every assigned partition is read to its end (for batch runs and tests).")
    var exitAtEnd = false

    @Flag(help: "Print each partition's stored offset, watermarks and lag as JSON lines, then exit (does not join the group).")
    var lag = false

    @Option(
        name: .customLong("kafka-commit-interval"),
        help: ArgumentHelp(
            "Copy the stored offsets to the group's committed offsets in Kafka this often, for lag tools (0: never; with --partitions only under -X group.id=NAME).",
            valueName: "duration"
        ))
    var kafkaCommitInterval = DurationArgument(milliseconds: 5000)

    @Option(name: .customLong("max-retries"), help: "Give up after this many failed attempts to reach PostgreSQL (default: keep trying).")
    var maxRetries: Int?

    @OptionGroup var contractOption: ContractOption

    @OptionGroup var log: LogOptions

    func validate() throws {
        _ = try contractOption.contract()
        for property in properties where !property.contains("=") || property.hasPrefix("=") {
            throw ValidationError("-X \(property): expected key=value")
        }
        if brokers.isEmpty || topic.isEmpty { throw ValidationError("--brokers and --topic must not be empty") }
        _ = try assignment()
    }

    /// --group or --partitions: exactly one.
    func assignment() throws -> PartitionAssignment {
        switch (group, partitions) {
        case (nil, nil):
            throw ValidationError("give --group ID (join a consumer group) or --partitions LIST (read those partitions, no group)")
        case (.some, .some):
            throw ValidationError("--group and --partitions cannot be combined: a group assigns the partitions itself")
        case (let group?, nil):
            guard !group.isEmpty else { throw ValidationError("--group must not be empty") }
            return .group(group)
        case (nil, let list?):
            do {
                return .partitions(try PartitionSelection(parsing: list))
            } catch {
                throw ValidationError("--partitions \(list): \(error)")
            }
        }
    }

    func run() throws {
        if let db, let password = ConnectionSettings.password(in: db) {
            ArgumentVector.hide(password, inValueOf: "--db")
        }
        signal(SIGPIPE, SIG_IGN)
        let logger = log.bootstrap(stage: "consume")

        // The same resolution as load's: both tools use one server, the stored offsets beside
        // the rows (a bad setting exits 1 naming its key).
        let resolved: ResolvedConnection
        do {
            resolved = try ConnectionSettings.resolve(db: db, envFile: envFile)
        } catch {
            throw RuntimeError("\(error)")
        }
        let settings = resolved.settings
        logger.info("stored offsets at \(settings.redactedDescription) (\(resolved.source))")
        var config = ConsumerConfiguration(brokers: brokers, topic: topic, assignment: try assignment())
        config.exitAtEnd = exitAtEnd
        config.contract = try contractOption.contract()
        config.kafkaCommitInterval = kafkaCommitInterval.seconds
        config.settings = properties.map { property in
            let equals = property.firstIndex(of: "=")!
            return (String(property[..<equals]), String(property[property.index(after: equals)...]))
        }
        let offsets = StoredOffsets(
            conninfo: settings.conninfo, endpoint: settings.redactedDescription, table: offsetsTable, maxRetries: maxRetries, logger: logger
        )

        do {
            if lag {
                var out: [UInt8] = []
                for partition in try PartitionLag.measure(config: config, offsets: offsets, logger: logger) {
                    partition.appendLine(into: &out)
                }
                try out.withUnsafeBytes { try writeAll(1, $0) }
                return
            }
            // The source stage: the first signal stops reading (and leaves the group); the rest of
            // the pipeline drains and commits.
            Interrupts.install(onSecond: .exit(ExitStatus.interrupted.rawValue))
            let consumer = TopicConsumer(config: config, offsets: offsets, logger: logger)
            try consumer.run(fd: 1)
            let t = consumer.totals
            logger.info("done: \(t.messages) messages, \(t.records) records, \(t.rejects) rejects, \(t.assignments) assignments")
        } catch is BrokenPipe {
            throw ExitCode.success
        } catch let error as ConsumeError {
            logger.critical("\(error.description)")
            throw ExitCode.failure
        } catch let error as PartitionSelectionError {
            throw ValidationError("--partitions \(partitions ?? ""): \(error)")
        } catch let error as KafkaError {
            logger.critical("\(error.description)")
            throw ExitCode.failure
        }
    }
}
