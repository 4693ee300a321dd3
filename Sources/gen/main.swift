import ArgumentParser
import CommandLineDialect
import Generating
import Ingest
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct BatchOptions: ParsableArguments {
    @Option(name: .customLong("rows-per-file"), help: ArgumentHelp("Rows in each batch.", valueName: "n"))
    var rowsPerFile = 50

    @Option(
        help: ArgumentHelp(
            "Pause between batches: 250ms, 1.5s, 5m, 1h (a bare number is seconds); 0 writes as fast as possible (default: 5s into a folder, 0 with --stdout).",
            valueName: "duration"))
    var interval: DurationArgument?

    @Option(help: ArgumentHelp("Stop after this many batches (default: until interrupted).", valueName: "n"))
    var files: Int?

    @Option(
        name: .customLong("invalid-rate"),
        help: ArgumentHelp("Share of rows that break exactly one validation rule (0…1).", valueName: "rate"))
    var invalidRate = 0.04

    @Option(help: ArgumentHelp("Seed for the rows: the same seed gives the same rows (timestamps aside).", valueName: "n"))
    var seed: UInt64?

    /// A folder is fed at a pace; a pipe is fed as fast as its reader takes it.
    func intervalMilliseconds(stdout: Bool) -> Int64 { interval?.milliseconds ?? (stdout ? 0 : 5000) }
}

struct Gen: ToolCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write CSV batches of e-commerce events, a few of them invalid, for the pipeline to ingest.",
        discussion: """
            Every --interval, writes a file of --rows-per-file events into --out, named \
            batch_YYYYMMDD_HHMMSS_NNNNNN.csv (UTC time and a per-run sequence). A file is written \
            under a hidden temporary name (.batch_….csv.tmp) and then linked into place, so a \
            reader never sees it half written and no existing file is ever replaced.

            About 70% of events are views and 30% purchases (1.00–500.00). A share \
            (--invalid-rate) of rows each break exactly one rule of docs/validation.md, chosen \
            uniformly: event_id, user_id, product_id, event_type, price, event_timestamp, the \
            field count, or a duplicate event_id within the file. --manifest records, per file, \
            which rows are valid and which rule each invalid row breaks:

              gen --files 3 --interval 0 --seed 1 --manifest /tmp/manifest.ndjson
              gen --stdout --files 2 --seed 1 | validate --summary > /dev/null

            With --contract FILE (or $INGEST_CONTRACT), rows for that contract instead: a value \
            of every declared type within its rules, NULL tokens in about 10% of nullable cells, \
            and at --invalid-rate rows breaking exactly one rule (a range, scale, length, \
            accepted values, pattern, type, NOT NULL, max_future, a check, a repeated key, the \
            field count). The CSV header is the contract's source names. Each row is checked by \
            validate's own rules before it is written; the manifest names each invalid row's \
            rule and the reason validate gives. Patterns are drawn for literals, bracket lists, \
            groups and counts; for another pattern plain text is drawn and kept where it matches \
            (a warning says so, and no row breaks that pattern on purpose); a contract gen finds \
            no valid row for is refused (exit 64).

            SIGINT/SIGTERM: the current file is finished, then gen exits 0; a second signal exits \
            at once (130).
            """)

    @Option(help: ArgumentHelp("Folder to write batches into (created if missing).", valueName: "folder"))
    var out = "data/incoming"

    @OptionGroup var batch: BatchOptions

    @Flag(help: "Write line-protocol records to stdout instead of files (no file provenance).")
    var stdout = false

    @Option(help: ArgumentHelp("Append one JSON line per batch describing its rows.", valueName: "path"))
    var manifest: String?

    @OptionGroup var contractOption: ContractOption

    @OptionGroup var log: LogOptions

    func validate() throws {
        guard batch.rowsPerFile > 0 else { throw ValidationError("--rows-per-file must be at least 1") }
        if let files = batch.files, files < 0 { throw ValidationError("--files must not be negative") }
        guard (0...1).contains(batch.invalidRate) else { throw ValidationError("--invalid-rate must be between 0 and 1") }
        if let contract = try declaredContract() {
            do {
                _ = try ContractRowGenerator(contract: contract, seed: 1, now: UTCTimestamp.now())
            } catch {
                writeStandardError("gen: Error: \(error)\n")
                throw ExitCode(ExitStatus.usage.rawValue)
            }
        }
    }

    /// The contract rows are made for, or nil for the e-commerce events: their own generator
    /// (`RowGenerator`, realistic shares of views and purchases, the rules of docs/validation.md)
    /// keeps writing exactly what the tests and bin/bench were written against.
    func declaredContract() throws -> Contract? {
        var contract = try contractOption.contract()
        let path = contract.path
        contract.path = Contract.ecommerceEvents.path
        if contract == Contract.ecommerceEvents { return nil }
        contract.path = path
        return contract
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        let logger = log.bootstrap(stage: "gen")
        Interrupts.install(onSecond: .exit(ExitStatus.interrupted.rawValue))

        var writer: BatchWriter?
        do {
            if !stdout {
                writer = try BatchWriter(folder: out)
                writer?.removeLeftovers()
            }
        } catch {
            throw RuntimeError("cannot write to folder \(out): \(describe(error))")
        }
        var manifestFD: Int32 = -1
        if let manifest {
            manifestFD = open(manifest, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard manifestFD >= 0 else {
                throw RuntimeError("cannot open manifest \(manifest): \(describe(SystemError("open", errno: errno)))")
            }
        }
        defer { if manifestFD >= 0 { close(manifestFD) } }

        let seed = batch.seed ?? UInt64(truncatingIfNeeded: UTCTimestamp.now().millisecondsSinceEpoch)
        var source = try BatchSource(contract: declaredContract(), seed: seed, invalidRate: batch.invalidRate)
        if case .contract(let generator) = source { for note in generator.notes { logger.warning("\(note)") } }
        let output = ByteOutput(fd: 1)
        var written = 0
        var totalRows = 0
        var totalInvalid = 0
        do {
            while batch.files.map({ written < $0 }) ?? true {
                if Interrupts.received > 0 { break }
                let started = monotonicMilliseconds()
                let now = UTCTimestamp.now()
                let rows = try source.next(rows: batch.rowsPerFile, now: now)
                var name: String?
                if var current = writer {
                    do {
                        name = try current.write(rows.csv, time: now)
                    } catch {
                        throw RuntimeError("cannot write to folder \(out): \(describe(error))")
                    }
                    writer = current
                } else {
                    rows.appendRecords(into: &output.bytes)
                    try output.flush()
                }
                if manifestFD >= 0 {
                    var line: [UInt8] = []
                    rows.appendManifestLine(file: name, into: &line)
                    try line.withUnsafeBytes { try writeAll(manifestFD, $0) }
                }
                written += 1
                totalRows += rows.count
                totalInvalid += rows.invalidCount
                logger.info("Generated batch of \(rows.count) \(source.noun)")
                if let name { logger.info("Written to: \(out)/\(name)") }
                if batch.files.map({ written >= $0 }) ?? false { break }
                let pause = batch.intervalMilliseconds(stdout: stdout) - (monotonicMilliseconds() - started)
                if pause > 0 { Interrupts.sleep(milliseconds: Int(pause)) }
            }
        } catch is BrokenPipe {
            // The reader went away: stop quietly.
        }
        logger.info("Total: \(written) batches, \(totalRows) \(source.noun) (\(totalInvalid) invalid)")
    }
}

extension Gen {
    /// The system's words for a failed call, without the call's name.
    func describe(_ error: Error) -> String {
        if let error = error as? SystemError { return String(cString: strerror(error.errno)) }
        return "\(error)"
    }
}
/// Where a batch's rows come from: the e-commerce generator, or the generic one for a contract.
enum BatchSource {
    case events(RowGenerator)
    /// The generator and the seed it was made with: it is made again per batch, around that
    /// batch's clock, with the sequence carried on.
    case contract(ContractRowGenerator)

    init(contract: Contract?, seed: UInt64, invalidRate: Double) throws {
        guard let contract else {
            self = .events(RowGenerator(seed: seed, invalidRate: invalidRate))
            return
        }
        do {
            self = .contract(try ContractRowGenerator(contract: contract, seed: seed, invalidRate: invalidRate, now: UTCTimestamp.now()))
        } catch {
            throw RuntimeError(error.description)
        }
    }

    var noun: String {
        if case .contract = self { return "rows" }
        return "events"
    }

    mutating func next(rows count: Int, now: UTCTimestamp) throws -> GeneratedBatch {
        switch self {
        case .events(var generator):
            let rows = generator.batch(rows: count, now: now)
            self = .events(generator)
            return .events(rows)
        case .contract(var generator):
            generator.now = now
            let rows = generator.batch(rows: count)
            self = .contract(generator)
            return .contract(rows, generator.contract)
        }
    }
}

/// One batch, in the encodings of its generator.
enum GeneratedBatch {
    case events([GeneratedRow])
    case contract([ContractRow], Contract)

    var count: Int {
        switch self {
        case .events(let rows): rows.count
        case .contract(let rows, _): rows.count
        }
    }

    var invalidCount: Int {
        switch self {
        case .events(let rows): rows.filter { $0.brokenRule != nil }.count
        case .contract(let rows, _): rows.filter { $0.broken != nil }.count
        }
    }

    var csv: [UInt8] {
        switch self {
        case .events(let rows): BatchEncoding.csv(rows)
        case .contract(let rows, let contract): ContractRecords.csv(rows, contract: contract)
        }
    }

    func appendRecords(into out: inout [UInt8]) {
        switch self {
        case .events(let rows): BatchEncoding.appendRecords(rows, into: &out)
        case .contract(let rows, let contract): ContractRecords.appendRecords(rows, contract: contract, into: &out)
        }
    }

    func appendManifestLine(file: String?, into out: inout [UInt8]) {
        switch self {
        case .events(let rows): BatchEncoding.appendManifestLine(file: file, rows: rows, into: &out)
        case .contract(let rows, let contract): ContractRecords.appendManifestLine(file: file, rows: rows, contract: contract, into: &out)
        }
    }
}

Gen.runAndExit()
