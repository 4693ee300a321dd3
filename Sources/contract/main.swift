import ArgumentParser
import CommandLineDialect
import ContractDrafting
import Ingest
import Postgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct ContractTool: ToolCommand {
    static let configuration = CommandConfiguration(
        commandName: "contract",
        abstract: "Start a table's contract from the table or a sample CSV, create the table, check a contract.",
        discussion: """
            A contract (docs/contracts.md) says what a table accepts; every stage takes it with \
            --contract FILE. Start one from what you have:

              contract init --table orders --sample orders.csv --create-table > orders.yaml
              contract check orders.yaml
            """,
        subcommands: [Init.self, Check.self])
}

extension ContractTool {
    struct Init: ToolCommand {
        static let configuration = CommandConfiguration(
            commandName: "init",
            abstract: "Write a starting contract derived from a table's catalog and/or a sample CSV.",
            discussion: """
                From the table (columns, types, NOT NULL, primary key; columns with a default \
                such as a serial or now() are left out) when it exists and the database is \
                asked (--db, --create-table, or no --sample); from the sample's header and \
                values otherwise (types as csvkit's csvsql infers them, plus bigint, \
                numeric(p,s), timestamptz, uuid and day-first timestamps; a column holding "", \
                NA, N/A, NULL or \\N is nullable with those tokens; one never missing is \
                NOT NULL; a first column named id or …_id with distinct values is the key). \
                With both, the table's types win and the sample names each column's source.

                --create-table creates the table from the contract (if it does not exist), its \
                dead-letter table <table>_bad_records, and grants SELECT, INSERT on both to \
                ingest_loader, as sql/postgres_setup.sql does for the events. Connection \
                settings as load's: --db, PG* variables, .env (never printed).
                """)

        @Option(help: ArgumentHelp("The table, as name or schema.name.", valueName: "name"))
        var table: String

        @Option(help: ArgumentHelp("A CSV file with a header to infer columns from.", valueName: "file.csv"))
        var sample: String?

        @Flag(name: .customLong("create-table"), help: "Create the table and its dead-letter table, with the loader's grant.")
        var createTable = false

        @Option(help: ArgumentHelp("libpq connection string or URI (default: PG* variables, then .env).", valueName: "conninfo"))
        var db: String?

        @Option(name: .customLong("env-file"), help: ArgumentHelp("A .env file with POSTGRES_* settings.", valueName: "path"))
        var envFile: String?

        @Option(help: ArgumentHelp("Write the contract here instead of stdout.", valueName: "file"))
        var output: String?

        func validate() throws {
            guard TableName(table) != nil else { throw ValidationError("--table \(table): expected name or schema.name") }
        }

        func run() throws {
            if let db, let password = ConnectionSettings.password(in: db) {
                ArgumentVector.hide(password, inValueOf: "--db")
            }
            let name = TableName(table)!
            var profile: SampleProfile?
            if let sample {
                do {
                    profile = try SampleProfile.read(path: sample)
                } catch let error as SystemError {
                    throw RuntimeError("cannot read the sample: \(error)")
                }
            }
            let connection = try (db != nil || createTable || sample == nil) ? connect() : nil
            var draft: ContractDraft
            if let connection, let catalog = try catalogColumns(name, connection) {
                draft = ContractDraft(table: name, catalog: catalog, sample: profile, samplePath: sample)
            } else if let profile, let sample {
                draft = ContractDraft(table: name, sample: profile, path: sample)
            } else {
                throw RuntimeError("table \(name) does not exist; give --sample FILE.csv to derive the contract from a file")
            }
            for warning in draft.warnings { writeStandardError("contract: \(warning)\n") }
            let text = draft.yaml
            let contract: Contract
            do {
                contract = try Contract.parse(text, path: output ?? "stdout")
            } catch {
                throw RuntimeError("the derived contract does not read back (a bug): \(error.description)")
            }
            if createTable, let connection {
                do {
                    try connection.executeScript(
                        TableCatalog.createScript(for: contract, checkpointsExist: try TableCatalog.checkpointsExist(on: connection)))
                } catch {
                    throw RuntimeError("cannot create \(name): \(error)")
                }
                writeStandardError("contract: \(name) and \(contract.deadLetterTable) ready; SELECT, INSERT granted to ingest_loader\n")
            }
            try write(text)
        }

        private func connect() throws -> PostgresConnection {
            var env = envFile
            if env == nil && access(".env", R_OK) == 0 { env = ".env" }
            do {
                let settings = try ConnectionSettings(db: db, envFile: env)
                return try PostgresConnection(conninfo: settings.conninfo)
            } catch {
                throw RuntimeError("cannot connect to PostgreSQL: \(error)")
            }
        }

        private func catalogColumns(_ name: TableName, _ connection: PostgresConnection) throws -> [CatalogColumn]? {
            do {
                return try TableCatalog.columns(of: name, on: connection)
            } catch {
                throw RuntimeError("cannot read the catalog for \(name): \(error)")
            }
        }

        private func write(_ text: String) throws {
            guard let output else {
                var copy = text
                try copy.withUTF8 { try writeAll(1, UnsafeRawBufferPointer($0)) }
                return
            }
            let fd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw RuntimeError("cannot write \(output): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var copy = text
            try copy.withUTF8 { try writeAll(fd, UnsafeRawBufferPointer($0)) }
        }
    }

    struct Check: ToolCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Read a contract and report its first problem (file:line: column: problem), exit 64; else a summary, exit 0.")

        @Argument(help: ArgumentHelp("The contract files.", valueName: "file"))
        var files: [String]

        func run() throws {
            var failed = false
            for path in files {
                do {
                    let c = try Contract.load(path: path)
                    let key = c.key.isEmpty ? "no key" : c.key.count == 1 ? "key \(c.keyName)" : c.keyName
                    let checks = c.checks.count == 1 ? "1 check" : "\(c.checks.count) checks"
                    writeStandardError("\(path): ok: table \(c.table), \(c.columns.count) columns, \(key), \(checks)\n")
                } catch {
                    writeStandardError("contract: \(error.description)\n")
                    failed = true
                }
            }
            if failed { throw ExitCode(ExitStatus.usage.rawValue) }
        }
    }
}
