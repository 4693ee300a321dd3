import ArgumentParser
import CommandLineDialect
import Ingest
import Logging
import Validating

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The rule settings: a contract, and the two older knobs that adjust it.
struct RuleOptions: ParsableArguments {
    @OptionGroup var contractOption: ContractOption

    @Option(
        name: .customLong("event-types"),
        help: ArgumentHelp(
            "Accepted event_type values, comma separated (any case): replaces the contract's accepted_values for event_type.",
            valueName: "list"))
    var eventTypes: String?

    @Option(
        name: .customLong("max-future"),
        help: ArgumentHelp(
            "How far past the clock a timestamp may be, for every column with a max_future: 250ms, 1.5s, 5m, 1h (a bare number is seconds).",
            valueName: "duration"))
    var maxFuture: DurationArgument?

    func rules() throws -> ValidationRules {
        var contract = try contractOption.contract()
        var types: [String]?
        if let eventTypes {
            let list = eventTypes.split(separator: ",").map { $0.trimming(" ") }.filter { !$0.isEmpty }
            guard !list.isEmpty else { throw ValidationError("--event-types: give at least one type") }
            guard contract.column(named: "event_type") != nil else {
                throw ValidationError("--event-types: the contract \(contract.path ?? "") has no event_type column")
            }
            types = list
        }
        contract.override(eventTypes: types, maxFutureMilliseconds: maxFuture?.milliseconds)
        return ValidationRules(contract: contract)
    }
}

@main
struct Validate: ToolCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check records against their table's contract; normalise the valid ones.",
        discussion: """
            Reads the line protocol (one JSON object per line) on stdin and writes it on stdout: \
            each record becomes a normalised record or a reject listing every reason it fails; \
            rejects, end-of-file markers and lines of unknown kinds pass through unchanged; a line \
            that is not JSON becomes a reject. The rules are in docs/validation.md.

            Given CSV files, reads them directly (as `watch` would) and validates their rows, so \
            one command shows why a file's rows fail:

              validate --summary --rejects-only data/incoming/batch_x.csv

            With a changed contract, the same command shows what the change would reject \
            before anyone deploys it:

              validate --contract changed.yaml --summary --rejects-only batch_x.csv

            Output is flushed at every end-of-file marker and whenever input pauses. The first \
            SIGINT/SIGTERM is ignored while stdin is drained to its end (in a pipeline Ctrl+C \
            reaches every stage; the source stops, validate finishes what is in the pipe); a \
            second one exits at once with 130. Exit status: 0 (also when rows are rejected), 1 \
            when a file cannot be read, 64 for usage errors.
            """)

    @OptionGroup var ruleOptions: RuleOptions

    @Flag(name: .customLong("summary"), help: "At the end, print counts per reason on stderr.")
    var summary = false

    @Flag(name: .customLong("rejects-only"), help: "Write only rejects (valid records are checked and dropped).")
    var rejectsOnly = false

    @Option(
        name: .customLong("max-line-bytes"), help: ArgumentHelp("Longest input line accepted; longer ones become rejects.", valueName: "n"))
    var maxLineBytes: Int = 64 << 20

    @Argument(help: ArgumentHelp("CSV files to read instead of stdin.", valueName: "file.csv"))
    var files: [String] = []

    @OptionGroup var log: LogOptions

    func validate() throws {
        _ = try ruleOptions.rules()
        guard maxLineBytes > 0 else { throw ValidationError("--max-line-bytes must be positive") }
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        let logger = log.bootstrap(stage: "validate")
        let rules = try ruleOptions.rules()
        var stage = StreamValidator(rules: rules, rejectsOnly: rejectsOnly)
        let output = ByteOutput(fd: 1)
        var failed = false
        do {
            if files.isEmpty {
                if isatty(0) == 0 { Interrupts.install(onSecond: .exit(ExitStatus.interrupted.rawValue)) }
                try validateStream(&stage, output, logger: logger)
            } else {
                Interrupts.install(onSecond: .exit(ExitStatus.interrupted.rawValue))
                for path in files {
                    if Interrupts.received > 0 { break }
                    do {
                        try validateFile(path, &stage, output, logger: logger)
                    } catch let error as SystemError {
                        logger.error("\(error)")
                        failed = true
                    }
                }
            }
            try output.flush()
        } catch is BrokenPipe {
            throw ExitCode(ExitStatus.success.rawValue)
        }
        if summary { writeStandardError(stage.counts.summary) }
        if failed { throw ExitCode(ExitStatus.failure.rawValue) }
    }

    /// stdin → stdout, the hot loop (its figures: docs/performance.md).
    private func validateStream(_ stage: inout StreamValidator, _ output: ByteOutput, logger: Logger) throws {
        // Options read once: each read of an @Option goes through its property wrapper and a
        // generic metadata lookup, some 250 instructions a line when done in the loop.
        let maxLineBytes = maxLineBytes
        let reader = LineReader(fd: 0, maxLineLength: maxLineBytes)
        // Idle, with load gone (killed): exit now, so consume sees us go and leaves the group.
        reader.downstream = 1
        // Rows go to a local buffer, swapped into `output` to flush: `&output.bytes` from this
        // module took a dynamic exclusivity check per row (its `@exclusivity(unchecked)` does
        // not reach across the module boundary), ~80 instructions a line.
        var out: [UInt8] = []
        swap(&out, &output.bytes)
        defer { swap(&out, &output.bytes) }
        func flush() throws {
            swap(&out, &output.bytes)
            defer { swap(&out, &output.bytes) }
            try output.flush()
        }
        let flushThreshold = output.flushThreshold
        while true {
            // Never hold output back while waiting for more input.
            if !out.isEmpty && !reader.hasBufferedLine && !reader.inputReady() {
                try flush()
            }
            guard let item = try reader.next() else { break }
            switch item {
            case .line(let bytes) where isTruncatedTail(bytes, reader: reader):
                logger.warning(
                    "stdin:\(reader.lineNumber): input ended in the middle of a line (\(bytes.count) bytes dropped): the upstream stage stopped mid-write"
                )
            case .line(let bytes) where bytes.count > maxLineBytes:
                // LineReader enforces its limit only for lines that outgrow its buffer.
                stage.processOverlong(byteCount: bytes.count, limit: maxLineBytes, inputLine: reader.lineNumber, into: &out)
                if out.count >= flushThreshold { try flush() }
            case .line(let bytes):
                if stage.process(bytes, inputLine: reader.lineNumber, into: &out) == .endOfFile || out.count >= flushThreshold {
                    try flush()
                }
            case .overlong(let count):
                stage.processOverlong(byteCount: count, limit: maxLineBytes, inputLine: reader.lineNumber, into: &out)
                reader.compact()
                if out.count >= flushThreshold { try flush() }
            }
        }
    }

    /// One CSV file, read the way `watch` reads it, each emitted line validated as it is made.
    /// The emitter runs on a thread of its own and hands over whole-line chunks (three 64 KiB
    /// buffers, swapped, not copied, so memory stays flat), as `watch --once FILE | validate`
    /// would through a pipe. On one thread this path ran at 0.70 of that pipeline's speed
    /// (bin/bench, 2 cores); so, median of 7 on 1,000,000 rows, 1.77 s against the pipeline's
    /// 2.21 s (with one slot instead of two, 2.18 s: the validator waited for each hand-over).
    private func validateFile(_ path: String, _ stage: inout StreamValidator, _ output: ByteOutput, logger: Logger) throws {
        let name = String(path.split(separator: "/").last ?? Substring(path))
        let emitter = try CSVEmitterThread(
            path: path, name: name, seen: UTCTimestamp.now(), emitter: CSVFileEmitter(contract: stage.validator.contract))
        var inputLine = 0
        while try emitter.withNextChunk({ chunk in
            guard let base = chunk.baseAddress else { return }
            var start = 0
            while start < chunk.count, let nl = memchr(base + start, 0x0A, chunk.count - start) {
                let end = base.distance(to: UnsafeRawPointer(nl))
                inputLine += 1
                _ = stage.process(UnsafeRawBufferPointer(rebasing: chunk[start..<end]), inputLine: inputLine, into: &output.bytes)
                try output.flushIfFull()
                start = end + 1
            }
        }) {}
        let emitted = try emitter.finish()
        if let problem = emitted.fileProblem {
            logger.warning("\(path): \(problem)")
        }
        try output.flush()
    }
}
