import Ingest
import Postgres
import Telemetry

/// What `load` does with a source file once its rows are committed.
public enum AfterCommit: Sendable {
    /// Move it into this folder (the default: `data/processed`).
    case archive(ContainedFolder)
    case delete
    /// Leave it, and record it in the folder's journal so `watch` skips it on restart.
    case keep
}

/// Everything `load` needs to know, with the defaults a user gets.
public struct LoaderConfiguration: Sendable {
    public var conninfo: String
    /// Where libpq connects, for logs (no password).
    public var endpoint: String
    /// What the table accepts (docs/contracts.md); `table` and `badRecordsTable` are its
    /// tables unless set otherwise (`load --table`).
    public var contract: Contract = .ecommerceEvents
    public var table: String = "public.ecommerce_events"
    public var checkpointTable: String = "ingest_checkpoints"
    public var badRecordsTable: String = "public.ecommerce_bad_records"
    /// Each Kafka partition's next offset to load, stored with the rows (see docs/kafka.md).
    public var kafkaOffsetsTable: String = "ingest_kafka_offsets"
    /// Commit once this many rows of complete files are waiting.
    public var batchRows: Int = 10_000
    /// Commit once the complete files waiting hold this many bytes in memory (many small
    /// files: their spools stay in memory), so load's resident memory stays flat. Up to three
    /// batches are alive (two committing, one filling) beside ~23 MB of libraries and start-up.
    /// 3,000 files of 5 rows (release build, files sealed): peak 32.0 MB with 2 MiB, 28.2 MB
    /// with 1 MiB, 23.7 MB with 512 KiB. The cost is batches: 2,000 files of 50 rows commit in
    /// 63 batches instead of 15, 1.02–1.10 s instead of 0.87–0.93 s (and 35.6 → 23.7 MB).
    public var batchMemory: Int = 512 << 10
    /// Whether a batch's tuples go to COPY in the order of the key's first column (runs sorted
    /// on arrival, merged at the COPY: `TupleRuns`, `KeyOrderedTuples`), for the key index's
    /// locality; false: arrival order.
    public var keyOrder = true
    /// Commit at the latest this long after the oldest waiting row arrived.
    public var maxDelay: Double = 1.0
    public var incoming: ContainedFolder = ContainedFolder("data/incoming")
    public var badRecords: ContainedFolder = ContainedFolder("data/bad_records")
    public var afterCommit: AfterCommit = .archive(ContainedFolder("data/processed"))
    /// Give up after this many failed attempts to reach the server (nil: never give up).
    public var maxRetries: Int? = nil
    /// Said with the first failed attempt to reach the server (e.g. where the embedded one is).
    public var unreachableHint: String? = nil
    /// A file over it commits none of its rows and moves to `quarantine`.
    public var rejectThreshold = RejectThreshold()
    public var quarantine = Quarantine(ContainedFolder("data/quarantine"))
    public var spoolLimit: Int = 8 << 20
    public var spoolDirectory: String = Spool.defaultDirectory
    /// Counters and gauges for `--metrics-listen` (always kept; cheap).
    public var metrics = LoadMetrics()
    /// Recorded in each checkpoint: which pipeline loaded the file (`--name`, default host:pid).
    public var pipeline: String = defaultPipelineName()

    public init(conninfo: String, endpoint: String) {
        self.conninfo = conninfo
        self.endpoint = endpoint
    }
}

/// Totals over a run, for the final log line and tests.
public struct LoaderTotals: Sendable {
    public var batches = 0
    public var filesCommitted = 0
    public var filesSkipped = 0
    /// Files refused as a whole (reject threshold, or a changed version of a committed file).
    public var filesQuarantined = 0
    public var rowsLoaded = 0
    public var rowsRejected = 0
    public var incompleteFiles = 0
    /// Files the reader abandoned mid-way (changed while being read).
    public var abandonedFiles = 0
}

/// Why `load` stopped.
public enum LoaderError: Error, CustomStringConvertible {
    case permanent(String, PostgresError)
    case gaveUp(String, PostgresError)
    /// Stopped by a signal while waiting for the server, holding no rows.
    case interrupted(String)

    public var description: String {
        switch self {
        case .permanent(let endpoint, let error): "\(endpoint): \(error.description)"
        case .gaveUp(let endpoint, let error): "\(endpoint): giving up after repeated failures: \(error.description)"
        case .interrupted(let endpoint): "\(endpoint): interrupted while waiting for the server"
        }
    }
}
