import CommandLineDialect
import Foundation
import Postgres
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The one duration grammar, as the tools (DurationArgument) and bin/ scripts (`duration_ms`)
/// read it: text and milliseconds, nil where it must be refused.
let durationCases: [(String, Int64?)] = [
    ("250ms", 250), ("1.5s", 1500), ("5m", 300_000), ("1h", 3_600_000), ("20", 20_000), ("0", 0),
    ("0.5", 500), ("007s", 7000), ("2.5h", 9_000_000), ("1.0005s", 1001), ("0.0004s", 0), ("0.5ms", 1),
    ("0.25ms", 0), ("1.123456789999s", 1123), ("0.1m", 6000), ("999999999999h", 3_599_999_999_996_400_000),
    ("", nil), ("s", nil), ("ms", nil), ("1.s", nil), (".5s", nil), ("1e3", nil), ("-1s", nil), ("+1s", nil),
    ("1 s", nil), (" 1s", nil), ("1s ", nil), ("5x", nil), ("1.5.5s", nil), ("inf", nil), ("nan", nil),
    ("1d", nil), ("1sec", nil), ("1M", nil), ("0x10", nil), ("1000000000000s", nil), ("١s", nil),
]

/// A `.env` holding the lines people write, and what both readers must make of it.
let trickyEnvFile =
    "# comment\n   # indented comment\n\nPLAIN=value\nSPACED = spaced value   \nexport EXPORTED=yes\n"
    + "export\tTABBED=tab\nQUOTED_D=\"a # not a comment\"\nQUOTED_S='it''s'\nSINGLE_IN_DOUBLE=\"it's\"\n"
    + "EMPTY=\nEMPTY_QUOTES=\"\"\nCOMMENTED=value # comment\nHASH=a#b\nTAB_COMMENT=value\t# comment\n"
    + "EQUALS=a=b=c\nURL=postgresql://u:p@h/db?sslmode=require\nUNTERMINATED=\"open\nCRLF=windows\r\n"
    + "1BAD=skipped\nBAD-KEY=skipped\nno equals line\nDUP=first\nDUP=second\n  LEADING=spaces  \n"
    + "QUOTE_THEN_TEXT=\"quoted\" trailing\nBACKSLASH=a\\b\nDOLLAR=$HOME\nexport=isakey\nexporter=1\n"
    + "UNICODE=café ☕\nLAST=no newline"

let trickyEnvValues: [String: String] = [
    "PLAIN": "value", "SPACED": "spaced value", "EXPORTED": "yes", "TABBED": "tab",
    "QUOTED_D": "a # not a comment", "QUOTED_S": "it", "SINGLE_IN_DOUBLE": "it's", "EMPTY": "",
    "EMPTY_QUOTES": "", "COMMENTED": "value", "HASH": "a#b", "TAB_COMMENT": "value", "EQUALS": "a=b=c",
    "URL": "postgresql://u:p@h/db?sslmode=require", "UNTERMINATED": "\"open", "CRLF": "windows",
    "DUP": "second", "LEADING": "spaces", "QUOTE_THEN_TEXT": "quoted", "BACKSLASH": "a\\b",
    "DOLLAR": "$HOME", "export": "isakey", "exporter": "1", "UNICODE": "café ☕", "LAST": "no newline",
]

/// bash with bin/lib/common.sh sourced, running `script` with `input` on stdin.
func commonShell(_ script: String, input: Data) throws -> ToolResult {
    let common = TestDatabase.packageRoot.appendingPathComponent("bin/lib/common.sh").path
    return try runTool(
        URL(fileURLWithPath: "/bin/bash"), ["-c", "source \(shellQuoted(common))\n" + script], stdin: input,
        timeout: 60)
}

/// The environment without COLUMNS, so help is wrapped at swift-argument-parser's default 80.
func environmentWithoutColumns() -> [String: String] {
    ProcessInfo.processInfo.environment.filter { $0.key != "COLUMNS" && $0.key != "INGEST_LOG_LEVEL" }
}

@Suite struct DialectTests {
    @Test func durationsReadTheSameInSwiftAndBash() throws {
        let script = #"""
            while IFS= read -r -d '' text; do
              if out=$(duration_ms "$text" 2>/dev/null); then printf '%s\n' "$out"; else printf 'refused\n'; fi
            done
            """#
        let input = Data(durationCases.map { $0.0 + "\u{0}" }.joined().utf8)
        let bash = try commonShell(script, input: input)
        #expect(bash.status == 0, "\(bash.stderr)")
        #expect(bash.lines.count == durationCases.count)
        for ((text, expected), fromBash) in zip(durationCases, bash.lines) {
            #expect(DurationArgument(argument: text)?.milliseconds == expected, "Swift reads \"\(text)\"")
            #expect(fromBash == expected.map(String.init) ?? "refused", "bash reads \"\(text)\"")
        }
    }

    @Test func durationsPrintInTheirOwnSyntax() {
        for (text, expected) in durationCases {
            guard let milliseconds = expected else { continue }
            let duration = DurationArgument(milliseconds: milliseconds)
            #expect(DurationArgument(argument: duration.description) == duration, "\(text) → \(duration)")
        }
        #expect(DurationArgument(milliseconds: 1500).description == "1.5s")
        #expect(DurationArgument(milliseconds: 300_000).description == "5m")
        #expect(DurationArgument(milliseconds: 250).description == "250ms")
    }

    @Test func envFilesReadTheSameInSwiftAndBash() throws {
        #expect(EnvFile.parse(trickyEnvFile) == trickyEnvValues)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("dialect-\(UUID().uuidString).env")
        try Data(trickyEnvFile.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let bash = try commonShell("env_file_entries \(shellQuoted(file.path))", input: Data())
        #expect(bash.status == 0, "\(bash.stderr)")
        var fromBash: [String: String] = [:]
        for line in bash.lines {
            let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            fromBash[String(parts[0])] = parts.count > 1 ? String(parts[1]) : nil
        }
        #expect(fromBash == trickyEnvValues)
        // load reads the same file the same way.
        #expect(try ConnectionSettings.readEnvFile(file.path) == trickyEnvValues)
    }

    @Test(arguments: [("gen", "--interval"), ("watch", "--poll"), ("validate", "--max-future"), ("load", "--max-delay")])
    func everyDurationOptionSpeaksTheOneSyntax(tool: String, option: String) throws {
        let bad = try runTool(Executables.url(tool), [option, "1.5x", "."], environment: environmentWithoutColumns())
        #expect(bad.status == 64)
        #expect(bad.stdout.isEmpty)
        #expect(bad.stderr.hasPrefix("\(tool): Error: The value '1.5x' is invalid for '\(option) <duration>'\n"), "\(bad.stderr)")
        let help = try runTool(Executables.url(tool), ["--help"], environment: environmentWithoutColumns())
        #expect(help.stdout.contains("250ms, 1.5s, 5m, 1h (a bare"), "\(tool) --help")
    }

    @Test(arguments: ["gen", "watch", "validate", "load"])
    func everyToolTakesLogLevel(tool: String) throws {
        let bad = try runTool(Executables.url(tool), ["--log-level", "loud", "."], environment: environmentWithoutColumns())
        #expect(bad.status == 64)
        #expect(bad.stderr.hasPrefix("\(tool): Error: The value 'loud' is invalid for '--log-level <level>'."), "\(bad.stderr)")
    }

    @Test func durationsAndLogLevelsTakeEffect() throws {
        // 1.5s between two batches; at warning level gen's info lines are not written.
        let started = Date()
        let quiet = try runTool(
            Executables.url("gen"), ["--stdout", "--files", "2", "--rows-per-file", "1", "--interval", "1.5s", "--log-level", "warning"],
            environment: environmentWithoutColumns())
        #expect(quiet.status == 0, "\(quiet.stderr)")
        #expect(quiet.stderr.isEmpty, "\(quiet.stderr)")
        #expect(quiet.lines.count == 2)
        #expect(Date().timeIntervalSince(started) >= 1.5)
        // INGEST_LOG_LEVEL when --log-level is not given.
        var env = environmentWithoutColumns()
        env["INGEST_LOG_LEVEL"] = "error"
        let viaEnvironment = try runTool(Executables.url("gen"), ["--stdout", "--files", "1"], environment: env)
        #expect(viaEnvironment.status == 0)
        #expect(viaEnvironment.stderr.isEmpty, "\(viaEnvironment.stderr)")
    }

    @Test func everyLogLineNamesItsStage() throws {
        let gen = try runTool(
            Executables.url("gen"), ["--stdout", "--files", "1", "--rows-per-file", "3"], environment: environmentWithoutColumns())
        let validate = try runTool(
            Executables.url("validate"), ["--summary"], stdin: Data(gen.stdout.utf8), environment: environmentWithoutColumns())
        #expect(gen.status == 0 && validate.status == 0)
        let lines = gen.stderr.split(separator: "\n")
        #expect(!lines.isEmpty)
        let stamp = #/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - gen - (INFO|WARNING|ERROR) - .+$/#
        #expect(lines.allSatisfy { $0.wholeMatch(of: stamp) != nil }, "\(gen.stderr)")
    }

    @Test func loadRefusesABadConnectionStringWithOneLineOnStderr() throws {
        let load = Executables.url("load")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("dialect-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let badDB = try runTool(load, ["--db", "not a conninfo"], stdin: Data(), currentDirectory: folder, timeout: 30)
        #expect(badDB.status == 1)
        #expect(badDB.stdout.isEmpty)
        #expect(
            badDB.stderr
                == "load: Error: --db: not a connection string (not shown: it may hold a password): expected keyword=value pairs or a postgresql:// URI\n"
        )
        let missing = try runTool(load, ["--env-file", "missing.env"], stdin: Data(), currentDirectory: folder, timeout: 30)
        #expect(missing.status == 1)
        #expect(missing.stdout.isEmpty)
        #expect(missing.stderr == "load: Error: cannot read --env-file missing.env: No such file or directory\n")
    }

    @Test func pipelineSaysWhyLoadFailed() throws {
        let copy = try ProjectCopy()
        var env = ProcessInfo.processInfo.environment
        env["INGEST_BIN_DIR"] = Executables.directory.path
        let result = try runTool(
            copy.url("bin/pipeline"), ["--once", "--", "--db", "not a conninfo"], environment: env,
            currentDirectory: copy.root, timeout: 60)
        #expect(result.status == 1)
        #expect(result.stderr.contains("pipeline: warning: load exited with status 1"), "\(result.stderr)")
        #expect(result.stderr.contains("pipeline: warning: load: Error: --db: not a connection string"), "\(result.stderr)")
    }

    @Test func aPasswordInsideDbIsHiddenFromTheRunningProcess() throws {
        try TestDatabase.with { db in
            let password = try #require(ProcessInfo.processInfo.environment["PGPASSWORD"])
            let f = try LoadFixture()
            var env = ProcessInfo.processInfo.environment
            env["PGPASSWORD"] = nil  // only --db holds it, and it must work from there
            let process = Process()
            process.executableURL = Executables.url("load")
            process.arguments = ["--db", "\(db.conninfo) password=\(password)"] + Array(f.arguments(db).dropFirst(2))
            process.environment = env
            let input = Pipe()
            let errors = Pipe()
            process.standardInput = input
            process.standardOutput = FileHandle.nullDevice
            process.standardError = errors
            try process.run()
            let errText = DrainedPipe(errors)
            defer {
                try? input.fileHandleForWriting.close()
                process.waitUntilExit()
            }
            // Rows committed: load is well past its start-up, where it hides the password.
            try input.fileHandleForWriting.write(contentsOf: stdinData(try f.file("a.csv", valid: 2, rejects: 0)))
            let loaded = try eventually(timeout: 60) { try count(db, "SELECT count(*) FROM ecommerce_events") == 2 }
            #expect(loaded)
            let cmdline = String(
                decoding: try Data(contentsOf: URL(fileURLWithPath: "/proc/\(process.processIdentifier)/cmdline")),
                as: UTF8.self)
            #expect(
                cmdline.contains("--db\u{0}\(db.conninfo) password=\(String(repeating: "x", count: password.utf8.count))\u{0}"),
                "\(cmdline)")
            #expect(!cmdline.contains(password))
            try input.fileHandleForWriting.close()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "\(errText.text())")
        }
    }

    @Test func aMissingTableNamesTheDatabaseUsed() throws {
        let f = try LoadFixture()
        var env = ProcessInfo.processInfo.environment
        env["PGDATABASE"] = nil  // nothing names a database: libpq uses the user's name
        let user = env["PGUSER"] ?? "postgres"
        let result = try runTool(
            Executables.url("load"),
            ["--table", "no_such_table", "--incoming", f.incoming.path, "--bad-records", f.bad.path, "--archive", f.processed.path],
            stdin: stdinData(try f.file("a.csv", valid: 1, rejects: 0)), environment: env, currentDirectory: f.root, timeout: 30)
        #expect(result.status == 1)
        #expect(result.stderr.contains("42P01"), "\(result.stderr)")
        #expect(result.stderr.contains("(database \(user))"), "\(result.stderr)")
    }

    @Test(arguments: ["gen", "watch", "validate", "load", "contract"])
    func helpIsPinned(tool: String) throws {
        let help = try runTool(Executables.url(tool), ["--help"], environment: environmentWithoutColumns())
        #expect(help.status == 0)
        #expect(help.stderr.isEmpty)
        #expect(help.stdout == (pinnedHelp[tool] ?? "") + "\n", "\(tool) --help changed:\n\(help.stdout)")
        // No ragged lines: a prose line is never followed by a word that would have fitted on it.
        let lines = help.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        for (line, next) in zip(lines, lines.dropFirst()) {
            let prose = !line.isEmpty && !line.hasPrefix(" ") && line != line.uppercased() && !line.hasSuffix(":")
            guard prose, !next.isEmpty, !next.hasPrefix(" "), let word = next.split(separator: " ").first else { continue }
            #expect(line.count + 1 + word.count >= 80, "\(tool): \"\(line)\" then \"\(next)\"")
        }
    }
}

/// The full --help of each tool, as a user sees it (80 columns). Change it on purpose only.
let pinnedHelp: [String: String] = [
    "gen": #"""
    OVERVIEW: Write CSV batches of e-commerce events, a few of them invalid, for
    the pipeline to ingest.

    Every --interval, writes a file of --rows-per-file events into --out, named
    batch_YYYYMMDD_HHMMSS_NNNNNN.csv (UTC time and a per-run sequence). A file is
    written under a hidden temporary name (.batch_….csv.tmp) and then linked into
    place, so a reader never sees it half written and no existing file is ever
    replaced.

    About 70% of events are views and 30% purchases (1.00–500.00). A share
    (--invalid-rate) of rows each break exactly one rule of docs/validation.md,
    chosen uniformly: event_id, user_id, product_id, event_type, price,
    event_timestamp, the field count, or a duplicate event_id within the file.
    --manifest records, per file, which rows are valid and which rule each invalid
    row breaks:

      gen --files 3 --interval 0 --seed 1 --manifest /tmp/manifest.ndjson
      gen --stdout --files 2 --seed 1 | validate --summary > /dev/null

    With --contract FILE (or $INGEST_CONTRACT), rows for that contract instead: a
    value of every declared type within its rules, NULL tokens in about 10% of
    nullable cells, and at --invalid-rate rows breaking exactly one rule (a range,
    scale, length, accepted values, pattern, type, NOT NULL, max_future, a check, a
    repeated key, the field count). The CSV header is the contract's source names.
    Each row is checked by validate's own rules before it is written; the manifest
    names each invalid row's rule and the reason validate gives. Patterns are drawn
    for literals, bracket lists, groups and counts; for another pattern plain text
    is drawn and kept where it matches (a warning says so, and no row breaks that
    pattern on purpose); a contract gen finds no valid row for is refused (exit
    64).

    SIGINT/SIGTERM: the current file is finished, then gen exits 0; a second signal
    exits at once (130).

    USAGE: gen [--out <folder>] [--rows-per-file <n>] [--interval <duration>] [--files <n>] [--invalid-rate <rate>] [--seed <n>] [--stdout] [--manifest <path>] [--contract <file>] [--log-level <level>]

    OPTIONS:
      --out <folder>          Folder to write batches into (created if missing).
                              (default: data/incoming)
      --rows-per-file <n>     Rows in each batch. (default: 50)
      --interval <duration>   Pause between batches: 250ms, 1.5s, 5m, 1h (a bare
                              number is seconds); 0 writes as fast as possible
                              (default: 5s into a folder, 0 with --stdout).
      --files <n>             Stop after this many batches (default: until
                              interrupted).
      --invalid-rate <rate>   Share of rows that break exactly one validation rule
                              (0…1). (default: 0.04)
      --seed <n>              Seed for the rows: the same seed gives the same rows
                              (timestamps aside).
      --stdout                Write line-protocol records to stdout instead of
                              files (no file provenance).
      --manifest <path>       Append one JSON line per batch describing its rows.
      --contract <file>       The table's contract, a YAML file
                              (docs/contracts.md); default: $INGEST_CONTRACT, else
                              contracts/ecommerce_events.yaml (built in).
      --log-level <level>     The least severe messages logged (default:
                              $INGEST_LOG_LEVEL, else info). (values: trace, debug,
                              info, notice, warning, error, critical)
      -h, --help              Show help information.
    """#,
    "watch": #"""
    OVERVIEW: Stream the rows of CSV files as line-protocol JSON: files in a
    folder, then each new one as it arrives.

    Each file becomes one `record` line per row (or a `reject` for a row that
    cannot be read), then an `eof` marker with the file's rows, bytes, SHA-256 and
    when it was seen complete. stdout carries data only and is flushed after every
    marker; logs go to stderr. The provenance `file` is the file's name within its
    folder.

    The header is mapped through the table's contract (--contract,
    docs/contracts.md): each cell goes out under its column's name; columns the
    contract does not read are not carried (logged once per file). A header without
    a column the contract needs refuses the file whole: one reject with the header,
    and a marker whose `refused` says why, so that load quarantines it.

    FOLLOWING A FOLDER
    On start, watch sends every matching file already in DIR, in byte order of
    names (gen's timestamped names sort oldest first), then follows DIR and sends
    each new file as soon as it is complete: renamed into DIR (write a hidden temp
    name, then rename, as gen does) or written in place and closed. inotify is set
    up before DIR is listed, so no file slips in between. A name is sent again only
    when it is replaced by a new version (load's checkpoint drops identical
    content). --poll DURATION rescans instead (macOS, NFS, SMB): a file counts as
    complete when its size and mtime are unchanged across two scans. --once applies
    the same rule: a file still open for writing is waited for (up to
    --writer-wait, default 30s) or left for the next run with a warning. A file
    that changes while it is read is abandoned (load drops its rows) and read again
    whole. A file whose last byte is not a newline is almost always still being
    written (a writer that closes and reopens it, or writes it in two parts): it is
    held until it has been unchanged for --settle (default 5s), then read whole; a
    finished writer's file without a final newline loads after that wait. --min-age
    DURATION holds every file until it is that old, for writers that close between
    rows.

    WHICH FILES
    Names matching --glob (default *.csv). Never read: dot-files, *.tmp, *.part,
    *~, directories, FIFOs and other non-regular files, symlinks leading outside
    DIR (each skip is logged once per name, at info level, with the reason; other
    extensions, upper-case .CSV and sub-folders too). A file that cannot be read
    gets one ERROR line on stderr (DIR/x.csv: Permission denied) and the stream
    goes on; with --once or FILE arguments watch then exits 1 at the end.

    PROGRESS
    With --progress, a progress line goes out after the listing and before each
    file of a folder: the files found complete and not sent yet, their bytes, and
    the oldest one's modification time, as
    {"kind":"progress","files_pending":2,"bytes_pending":8100,…}. validate passes
    it through; load turns it into its backlog and lag metrics (docs/protocol.md,
    docs/operations.md).

    MANY PIPELINES, ONE FOLDER
      --shared: several pipelines (on one machine, or several sharing DIR
      over NFS) split the files. Before reading a file, watch claims it in
      DIR/.claims/FILE (one pipeline wins); load removes the claim when it
      archives the file. Each pipeline marks itself alive in
      DIR/.claims/.pipelines/NAME; the files of a pipeline silent for
      --lease (default 30s) are taken over by the others. Give watch and
      load the same --name.

    RESTARTS
    Normally load archives committed files to data/processed/, so DIR holds only
    pending files and a restart sends exactly those. When load runs with --keep it
    appends one line per committed file to DIR/.ingest-committed
    ({"file":"batch_….csv","bytes":4321,"sha256":"…"}); on start watch skips each
    file whose name, size and SHA-256 match an entry (hashing is far cheaper than
    parsing and loading) and logs how many it skipped. --journal PATH reads another
    journal; --no-journal sends everything.

    STOPPING
    Ctrl+C reaches every stage of a pipeline at once. On the first SIGINT or
    SIGTERM watch finishes the file it is on (its marker written and flushed),
    starts no other, and exits 0, so load can commit it. A second signal exits at
    once (130).

    EXIT STATUS
    0 done or stopped; 1 a file could not be read (--once / FILE mode) or DIR went
    away; 64 usage error. A closed stdout (| head) exits 0 quietly.

    Scripts must call it by path (.build/release/watch): procps also has a `watch`.

    EXAMPLES
      watch data/incoming | validate | load
      watch --once bad.csv | validate --summary
      watch --once data/incoming > backlog.jsonl
      watch --poll 2s /mnt/share/incoming | validate | load
      watch --glob 'orders_*.csv' --no-journal data/incoming

    USAGE: watch [<options>] <dir-or-file> ...

    ARGUMENTS:
      <dir-or-file>           Folders to follow, or CSV files to replay in the
                              order given (files first, then the folder).

    OPTIONS:
      --once                  Send the files already in the folder, then exit
                              (batch mode).
      --poll <duration>       Rescan the folder this often instead of using
                              inotify: 250ms, 1.5s, 5m, 1h (a bare number is
                              seconds).
      --glob <pattern>        Which names are input files (fnmatch pattern).
                              (default: *.csv)
      --progress              Before each file, write a progress line: files and
                              bytes still pending in the folder, and the oldest
                              one's time (load reports them as metrics).
      --writer-wait <duration>
                              With --once: how long to wait for a file still open
                              for writing before leaving it for the next run.
                              (default: 30s)
      --settle <duration>     Hold a file whose last byte is not a newline until it
                              has been unchanged this long (0: do not hold).
                              (default: 5s)
      --min-age <duration>    Hold every file until it has been unchanged this
                              long, for writers that close between rows. (default:
                              0s)
      --journal <path>        Journal of files already committed by `load --keep`
                              (default: DIR/.ingest-committed).
      --no-journal            Do not read the committed-files journal: send every
                              file in the folder.
      --shared                Several pipelines follow this folder: claim each file
                              (in DIR/.claims) before reading it.
      --name <name>           This pipeline's name, for claims; give load the same
                              one (default: host:pid).
      --lease <duration>      With --shared: a pipeline silent this long is
                              presumed dead and its claimed files are taken over.
                              (default: 30s)
      --contract <file>       The table's contract, a YAML file
                              (docs/contracts.md); default: $INGEST_CONTRACT, else
                              contracts/ecommerce_events.yaml (built in).
      --log-level <level>     The least severe messages logged (default:
                              $INGEST_LOG_LEVEL, else info). (values: trace, debug,
                              info, notice, warning, error, critical)
      -h, --help              Show help information.
    """#,
    "validate": #"""
    OVERVIEW: Check records against their table's contract; normalise the valid
    ones.

    Reads the line protocol (one JSON object per line) on stdin and writes it on
    stdout: each record becomes a normalised record or a reject listing every
    reason it fails; rejects, end-of-file markers and lines of unknown kinds pass
    through unchanged; a line that is not JSON becomes a reject. The rules are in
    docs/validation.md.

    Given CSV files, reads them directly (as `watch` would) and validates their
    rows, so one command shows why a file's rows fail:

      validate --summary --rejects-only data/incoming/batch_x.csv

    With a changed contract, the same command shows what the change would reject
    before anyone deploys it:

      validate --contract changed.yaml --summary --rejects-only batch_x.csv

    Output is flushed at every end-of-file marker and whenever input pauses. The
    first SIGINT/SIGTERM is ignored while stdin is drained to its end (in a
    pipeline Ctrl+C reaches every stage; the source stops, validate finishes what
    is in the pipe); a second one exits at once with 130. Exit status: 0 (also when
    rows are rejected), 1 when a file cannot be read, 64 for usage errors.

    USAGE: validate [--contract <file>] [--event-types <list>] [--max-future <duration>] [--summary] [--rejects-only] [--max-line-bytes <n>] [<file.csv> ...] [--log-level <level>]

    ARGUMENTS:
      <file.csv>              CSV files to read instead of stdin.

    OPTIONS:
      --contract <file>       The table's contract, a YAML file
                              (docs/contracts.md); default: $INGEST_CONTRACT, else
                              contracts/ecommerce_events.yaml (built in).
      --event-types <list>    Accepted event_type values, comma separated (any
                              case): replaces the contract's accepted_values for
                              event_type.
      --max-future <duration> How far past the clock a timestamp may be, for every
                              column with a max_future: 250ms, 1.5s, 5m, 1h (a bare
                              number is seconds).
      --summary               At the end, print counts per reason on stderr.
      --rejects-only          Write only rejects (valid records are checked and
                              dropped).
      --max-line-bytes <n>    Longest input line accepted; longer ones become
                              rejects. (default: 67108864)
      --log-level <level>     The least severe messages logged (default:
                              $INGEST_LOG_LEVEL, else info). (values: trace, debug,
                              info, notice, warning, error, critical)
      -h, --help              Show help information.
    """#,
    "load": #"""
    OVERVIEW: Load the line protocol into PostgreSQL with COPY, exactly once,
    keeping rejects as dead letters.

    Reads records, rejects and end-of-file markers (see docs/protocol.md) on stdin,
    usually from `watch data/incoming | validate`. A source file is committed only
    when its end marker arrives: its rows, its rejects and a checkpoint (table,
    file name, size, SHA-256) go into one transaction, so a file seen again is
    skipped and a crash at any instant loses or doubles nothing. Records without
    provenance (from jq, kcat, …) load in batches by size and time; the table's
    primary key keeps replays from doubling rows.

    The contract (--contract, docs/contracts.md; default: the e-commerce events)
    names the table, its dead-letter table and its columns. At start-up it is
    checked against the table's catalog: a contract column the table lacks or whose
    type the table's cannot hold, a table type load does not write, a NOT NULL
    column without default the contract leaves out, or a key other than the table's
    primary key stops load with one line naming the contract file and the column,
    exit status 64.

    Rejects are written to <bad-records>/<source file>.ndjson (atomically, before
    the commit) and to the contract's dead-letter table (by default
    ecommerce_bad_records). A key already in the table becomes a reject "duplicate
    event_id (already in the table)" (the contract's key); a row the database
    refuses becomes a reject with the database's message; the rest of the batch
    commits.

    Connection (highest precedence first): --db (a conninfo or postgresql:// URI);
    the libpq variables PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE…;
    the keys POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DB, POSTGRES_USER,
    POSTGRES_PASSWORD from the environment or the --env-file (default ./.env when
    present). Only when none of these is set, the embedded server of bin/pg
    ($INGEST_PGDATA, else ./.pgdata), if it was created; else libpq's defaults. A
    configured server is never replaced by the embedded one, even when it does not
    answer. The password is never printed. Prefer PGPASSWORD, ~/.pgpass or .env for
    it: a password inside --db is overwritten in load's argument list at start-up,
    but other local users could read it in `ps` until then. An unreachable server
    is retried with backoff, and a silent one (packets dropped) is noticed within
    ~20 s through libpq keepalives and timeouts that --db may override
    (docs/postgres.md); a full disk is waited out. A bad --db or --env-file,
    authentication failures, missing tables and missing privileges stop with one
    line on stderr and exit status 1.

    Reject threshold: with --max-reject-rate or --max-rejects, a file over the
    limit (counted when its end marker arrives) commits none of its rows and no
    dead letters; it moves to <quarantine>/<file> with <file>.reason.json and is
    checkpointed as quarantined, so the same bytes are not loaded by accident. A
    fixed file put back into the incoming folder loads. Records without provenance
    have no file to refuse: the threshold does not apply.

    Metrics: --metrics-listen 127.0.0.1:9187 serves /metrics for Prometheus: rows
    read, loaded and rejected (by reason), files committed, batches, retries,
    arrival-to-commit latency, and the backlog and lag that `watch --progress`
    reports (docs/operations.md).

    Signals: the first SIGINT/SIGTERM does not stop load: it drains its input to
    the end (the upstream stage stops), commits and exits 0. A second one exits at
    once (status 130); nothing uncommitted is lost, since its files stay in the
    incoming folder.

    Examples:
      watch data/incoming | validate | load
      validate data/incoming/batch_x.csv | load --keep
      jq -c '.[]' events.json | validate | load --db postgresql://db/shop

    USAGE: load <options>

    OPTIONS:
      --db <conninfo>         Connection string (conninfo or URI); overrides PG*
                              and POSTGRES_* settings.
      --env-file <path>       Read POSTGRES_* keys from this file (default: ./.env
                              if it exists).
      --contract <file>       The table's contract, a YAML file
                              (docs/contracts.md); default: $INGEST_CONTRACT, else
                              contracts/ecommerce_events.yaml (built in).
      --table <name>          Target table (may be schema-qualified), instead of
                              the contract's (its columns must still fit the
                              contract).
      --batch-rows <n>        Commit once this many rows of complete files are
                              waiting. (default: 10000)
      --max-delay <duration>  Commit at the latest this long after the oldest
                              waiting row arrived: 250ms, 1.5s, 5m, 1h (a bare
                              number is seconds). (default: 1s)
      --incoming <dir>        The folder the source files are in (archived, deleted
                              or journaled after commit). (default: data/incoming)
      --bad-records <dir>     Folder for dead-letter files. (default:
                              data/bad_records)
      --archive <dir>         Move committed source files into this folder.
                              (default: data/processed)
      --delete                Delete committed source files instead of archiving
                              them.
      --keep                  Leave committed source files in place; record them in
                              <incoming>/.ingest-committed so watch skips them on
                              restart.
      --max-reject-rate <rate>
                              Refuse a file whose share of rejected rows is over
                              this (0…1): none of its rows load; it moves to
                              --quarantine.
      --max-rejects <n>       Refuse a file with more rejected rows than this,
                              likewise.
      --quarantine <dir>      Folder for refused files (reject threshold, or a
                              changed version of a committed file), each with
                              <file>.reason.json. (default: data/quarantine)
      --name <name>           This pipeline's name, recorded in each checkpoint
                              (default: host:pid).
      --max-retries <n>       Give up after this many failed attempts to reach the
                              server (default: keep trying).
      --metrics-listen <host:port>
                              Serve Prometheus metrics at http://HOST:PORT/metrics
                              (e.g. 127.0.0.1:9187; port 0 picks a free one). Off
                              by default.
      --log-level <level>     The least severe messages logged (default:
                              $INGEST_LOG_LEVEL, else info). (values: trace, debug,
                              info, notice, warning, error, critical)
      -h, --help              Show help information.
    """#,
    "contract": #"""
    OVERVIEW: Start a table's contract from the table or a sample CSV, create the
    table, check a contract.

    A contract (docs/contracts.md) says what a table accepts; every stage takes it
    with --contract FILE. Start one from what you have:

      contract init --table orders --sample orders.csv --create-table > orders.yaml
      contract check orders.yaml

    USAGE: contract <subcommand>

    OPTIONS:
      -h, --help              Show help information.

    SUBCOMMANDS:
      init                    Write a starting contract derived from a table's
                              catalog and/or a sample CSV.
      check                   Read a contract and report its first problem
                              (file:line: column: problem), exit 64; else a
                              summary, exit 0.

      See 'contract help <subcommand>' for detailed help.
    """#,
]

extension DialectTests {
    /// On a terminal bin/run redraws its progress line in place; the lines that follow it
    /// ("all files committed", "stopping: …") start on a line of their own.
    @Test func runEndsItsProgressLineBeforeOtherLines() throws {
        try TestDatabase.with { db in
            let copy = try ProjectCopy()
            var env = ProcessInfo.processInfo.environment
            env["INGEST_BIN_DIR"] = Executables.directory.path
            env["PGDATABASE"] = db.name
            // script(1) gives bin/run a terminal for stderr, as a user's shell would.
            let result = try runTool(
                URL(fileURLWithPath: "/usr/bin/script"),
                ["-qefc", "bin/run --files 3 -- --interval 1s --rows-per-file 5", "/dev/null"],
                environment: env, currentDirectory: copy.root, timeout: 120)
            #expect(result.status == 0, "\(result.stdout)")
            let text = result.stdout
            #expect(text.contains("files pending"), "no progress line drawn: \(text)")
            for marker in ["run: all files committed", "run: stopping:", "run: stopped:"] {
                let found = try #require(text.range(of: marker), "\(marker) missing: \(text)")
                let before = text[..<found.lowerBound]
                // utf8: the terminal's "\r\n" is one Character.
                #expect(before.utf8.last == UInt8(ascii: "\n"), "\"\(marker)\" follows \"\(before.suffix(60))\"")
            }
            #expect(try count(db, "SELECT count(*) FROM ingest_checkpoints") == 3)
        }
    }
}
