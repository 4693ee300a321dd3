import Posix
import Prometheus
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What `load` counts, as Prometheus metrics (names and units per Prometheus' conventions; see
/// docs/operations.md). Always present and cheap: without `--metrics-listen` nobody reads them.
///
/// Counters move when rows are read and when batches commit, so a scrape sees rows per second
/// while a large file is still being read, and totals that match the table after each commit.
public final class LoadMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    let rowsRead: Counter
    let rowsLoaded: Counter
    let filesCommitted: Counter
    let filesSkipped: Counter
    let batches: Counter
    let databaseRetries: Counter
    let sourceBytesCommitted: Counter
    let commitLatency: ValueHistogram
    let batchRows: ValueHistogram
    let lastCommit: Gauge
    let filesPending: Gauge
    let bytesPending: Gauge
    let oldestPendingAge: Gauge
    let rowsCommitting: Gauge
    let rowsIsolating: Gauge
    let rowsIsolatingLeft: Gauge
    let batchesIsolated: Counter

    /// Label values of `ingest_rows_rejected_total{reason}` seen so far, bounded (see `RejectReasonLabel`).
    private let reasonLabels = Mutex(RejectReasonLabel.Catalogue())
    /// What is pending: watch's last report plus the files load holds but has not committed.
    private let backlog = Mutex(Backlog())
    /// The transactions in flight (each commit session has at most one), by handle.
    private let inFlight = Mutex(InFlight())
    /// What /readyz answers from: whether the database answers, and when work last moved.
    private let health = Mutex(Health(since: wallClockSeconds()))
    /// Work waiting this long with no commit meanwhile makes /readyz answer "stuck" (503).
    public static let stuckAfterSeconds = 300.0

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        rowsRead = registry.makeCounter(
            descriptor: d(
                "ingest_rows_read_total", "Rows (records and rejects) load has read from its input, committed or not."))
        rowsLoaded = registry.makeCounter(descriptor: d("ingest_rows_loaded_total", "Rows committed to the events table."))
        filesCommitted = registry.makeCounter(
            descriptor: d(
                "ingest_files_committed_total", "Source files committed (rows, dead letters and checkpoint)."))
        filesSkipped = registry.makeCounter(
            descriptor: d(
                "ingest_files_skipped_total", "Source files skipped because their checkpoint already existed."))
        batches = registry.makeCounter(descriptor: d("ingest_batches_total", "Transactions committed."))
        databaseRetries = registry.makeCounter(
            descriptor: d(
                "ingest_database_retries_total",
                "Failed attempts to connect or commit that were retried (server unreachable, connection lost, serialization failure)."))
        sourceBytesCommitted = registry.makeCounter(
            descriptor: d(
                "ingest_source_bytes_committed_total", "Bytes of the source files committed."))
        commitLatency = registry.makeValueHistogram(
            descriptor: d("ingest_commit_latency_seconds", "Per source file: from the moment watch saw it complete to its commit."),
            buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600])
        batchRows = registry.makeValueHistogram(
            descriptor: d("ingest_batch_rows", "Rows (loaded and rejected) per committed transaction."),
            buckets: [1, 10, 100, 1_000, 5_000, 10_000, 20_000, 50_000, 100_000, 500_000])
        lastCommit = registry.makeGauge(
            descriptor: d(
                "ingest_last_commit_timestamp_seconds", "Unix time of the last commit (0: none yet)."))
        filesPending = registry.makeGauge(
            descriptor: d(
                "ingest_files_pending",
                "Files not committed yet: waiting in the folder (as watch last reported) plus those load holds."))
        bytesPending = registry.makeGauge(
            descriptor: d(
                "ingest_bytes_pending", "Bytes of the files waiting in the folder (as watch last reported)."))
        oldestPendingAge = registry.makeGauge(
            descriptor: d(
                "ingest_oldest_pending_age_seconds", "Age of the oldest file not committed yet (0 when none): the lag."))
        rowsCommitting = registry.makeGauge(
            descriptor: d(
                "ingest_rows_committing", "Rows (records and rejects) of the batches in their transaction now (0: none)."))
        rowsIsolating = registry.makeGauge(
            descriptor: d(
                "ingest_rows_isolating",
                "Records of the batches being isolated now: the server refused a row, or a record is not in canonical form (0: none)."))
        rowsIsolatingLeft = registry.makeGauge(
            descriptor: d("ingest_rows_isolating_left", "Of ingest_rows_isolating, the records not through isolation yet."))
        batchesIsolated = registry.makeCounter(
            descriptor: d("ingest_batches_isolated_total", "Transaction attempts whose rows went through isolation."))
        // Present from the start (value 0), so alerts and rate() see the series before the first reject.
        _ = registry.makeCounter(
            descriptor: d("ingest_rows_rejected_total", Self.rejectedHelp), labels: [("reason", RejectReasonLabel.none)])
    }

    static let rejectedHelp = "Rows committed as dead letters, by reason (a row with several reasons counts once per reason)."

    // MARK: - Reading

    /// A record or reject line read from the input.
    @inline(__always)
    public func rowRead() { rowsRead.increment() }

    /// `count` rows read by load (it adds them up per file rather than per row).
    public func rowsRead(_ count: Int) { if count > 0 { rowsRead.increment(by: Int64(count)) } }

    /// load started holding a source file's rows (its first line arrived).
    public func fileStarted(_ name: String) {
        let now = wallClockSeconds()
        backlog.withLock { $0.held[name] = $0.held[name] ?? now }
    }

    /// load no longer holds these files (committed, skipped, or input ended without their marker).
    public func filesFinished(_ names: [String]) {
        backlog.withLock { b in for name in names { b.held[name] = nil } }
        refreshBacklog()
    }

    /// watch's view of its folder, from a `progress` line: files and bytes not sent yet, and
    /// the modification time of the oldest of them (seconds since the epoch).
    public func folderProgress(filesPending: Int, bytesPending: Int64, oldestPendingSince: Double?) {
        backlog.withLock { b in
            b.folderFiles = filesPending
            b.folderBytes = bytesPending
            b.folderOldest = oldestPendingSince
        }
        refreshBacklog()
    }

    // MARK: - Committing

    /// A retried connection or commit attempt.
    public func databaseRetry() {
        databaseRetries.increment()
        let now = wallClockSeconds()
        health.withLock { if $0.unreachableSince == nil { $0.unreachableSince = now } }
    }

    /// A connection to the database was made (or works again).
    public func databaseConnected() {
        health.withLock {
            $0.connected = true
            $0.unreachableSince = nil
        }
    }

    /// For `/readyz`: nil when ready (the database answers, and work does not wait without
    /// progress for ``stuckAfterSeconds``), else why not, in a few words.
    public func notReadyReason(now: Double? = nil) -> String? {
        let now = now ?? wallClockSeconds()
        let state = health.withLock { $0 }
        if !state.connected && state.unreachableSince == nil { return "not connected to the database yet" }
        if let since = state.unreachableSince {
            return "the database does not answer (for \(Int(now - since)) s)"
        }
        let (files, oldest) = backlog.withLock { b in
            (b.folderFiles + b.held.count, [b.folderOldest, b.held.values.min()].compactMap { $0 }.min())
        }
        let lastMove = max(state.lastCommit ?? state.since, state.since)
        if files > 0, let oldest, now - oldest > Self.stuckAfterSeconds, now - lastMove > Self.stuckAfterSeconds {
            return "stuck: \(files) files waiting, the oldest for \(Int(now - oldest)) s, no commit for \(Int(now - lastMove)) s"
        }
        return nil
    }

    /// A batch's transaction began, holding `rows` rows; the handle goes to the calls below.
    public func commitStarted(rows: Int) -> Int {
        let handle = inFlight.withLock { state in
            state.next += 1
            state.commits[state.next] = InFlight.Commit(rows: rows)
            return state.next
        }
        refreshInFlight()
        return handle
    }

    /// The transaction `handle` began isolating `rows` records.
    public func isolationStarted(_ handle: Int, rows: Int) {
        batchesIsolated.increment()
        inFlight.withLock {
            $0.commits[handle]?.isolating = rows
            $0.commits[handle]?.left = rows
        }
        refreshInFlight()
    }

    /// Of the records `handle` isolates, `left` are not through yet.
    public func isolationProgress(_ handle: Int, left: Int) {
        inFlight.withLock { $0.commits[handle]?.left = left }
        refreshInFlight()
    }

    /// The transaction `handle` ended (committed, rolled back or lost).
    public func commitEnded(_ handle: Int) {
        _ = inFlight.withLock { $0.commits.removeValue(forKey: handle) }
        refreshInFlight()
    }

    private func refreshInFlight() {
        let (rows, isolating, left) = inFlight.withLock { state in
            state.commits.values.reduce((0, 0, 0)) { ($0.0 + $1.rows, $0.1 + $1.isolating, $0.2 + ($1.isolating > 0 ? $1.left : 0)) }
        }
        rowsCommitting.set(Double(rows))
        rowsIsolating.set(Double(isolating))
        rowsIsolatingLeft.set(Double(left))
    }

    /// One committed file of a batch.
    public struct CommittedFile: Sendable {
        public var skipped: Bool
        public var loaded: Int
        public var rejected: Int
        public var bytes: Int64?
        /// Seconds from the moment watch saw the file complete to the commit.
        public var arrivalToCommit: Double?

        public init(skipped: Bool, loaded: Int, rejected: Int, bytes: Int64?, arrivalToCommit: Double?) {
            self.skipped = skipped
            self.loaded = loaded
            self.rejected = rejected
            self.bytes = bytes
            self.arrivalToCommit = arrivalToCommit
        }
    }

    /// A committed transaction: its files and the reasons of its dead letters (reason text → rows).
    public func committed(files: [CommittedFile], rejectReasons: [String: Int]) {
        batches.increment()
        var rows = 0
        for file in files {
            rows += file.loaded + file.rejected
            rowsLoaded.increment(by: Int64(file.loaded))
            if file.skipped {
                filesSkipped.increment()
                continue
            }
            guard let bytes = file.bytes else { continue }  // records without provenance
            filesCommitted.increment()
            sourceBytesCommitted.increment(by: bytes)
            if let seconds = file.arrivalToCommit { commitLatency.record(max(0, seconds)) }
        }
        batchRows.record(Double(rows))
        for (reason, count) in rejectReasons where count > 0 {
            rejected(reason: reason, count: count)
        }
        let now = wallClockSeconds()
        lastCommit.set(now)
        health.withLock {
            $0.lastCommit = now
            $0.connected = true
            $0.unreachableSince = nil
        }
    }

    /// Dead letters committed with this reason (the reason's stable text, e.g. "must be > 0").
    public func rejected(reason: String, count: Int) {
        let label = reasonLabels.withLock { $0.label(for: reason) }
        registry.makeCounter(descriptor: d("ingest_rows_rejected_total", Self.rejectedHelp), labels: [("reason", label)])
            .increment(by: Int64(count))
    }

    // MARK: - Kafka (hook)

    /// Per-partition consumer lag as `ingest_kafka_consumer_lag{topic, partition}`: messages
    /// between the committed next offset and the high watermark. Set by load's reading thread
    /// at each `watermarks` line from `consume` (see `KafkaLag` in Loading, docs/operations.md).
    public func kafkaLag(topic: String, partition: Int32, messages: Int64) {
        kafkaLagGauge(topic: topic, partition: partition).set(Double(messages))
    }

    /// Drops a partition's lag series (this load no longer reads the partition).
    public func removeKafkaLag(topic: String, partition: Int32) {
        registry.unregisterGauge(kafkaLagGauge(topic: topic, partition: partition))
    }

    private func kafkaLagGauge(topic: String, partition: Int32) -> Gauge {
        registry.makeGauge(
            descriptor: d("ingest_kafka_consumer_lag", "Messages between the committed offset and the partition's high watermark."),
            labels: [("topic", topic), ("partition", String(partition))])
    }

    // MARK: - Exposition

    /// The text exposition format (version 0.0.4), with the lag computed at this instant.
    public func exposition() -> [UInt8] {
        refreshBacklog()
        var out: [UInt8] = []
        registry.emit(into: &out)
        return out
    }

    private func refreshBacklog() {
        let (files, bytes, oldest) = backlog.withLock { b in
            (b.folderFiles + b.held.count, b.folderBytes, [b.folderOldest, b.held.values.min()].compactMap { $0 }.min())
        }
        filesPending.set(Double(files))
        bytesPending.set(Double(bytes))
        oldestPendingAge.set(oldest.map { max(0, wallClockSeconds() - $0) } ?? 0)
    }

    struct Health {
        /// When load started (a fresh process has committed nothing yet, and is not stuck for that).
        var since: Double
        var connected = false
        var unreachableSince: Double?
        var lastCommit: Double?
    }

    struct InFlight {
        struct Commit {
            var rows: Int
            var isolating = 0
            var left = 0
        }
        var next = 0
        var commits: [Int: Commit] = [:]
    }

    struct Backlog {
        var folderFiles = 0
        var folderBytes: Int64 = 0
        var folderOldest: Double?
        /// Files load holds uncommitted, with when their first line arrived.
        var held: [String: Double] = [:]
    }
}

/// A metric name as Prometheus shows it, with its HELP text.
func d(_ name: String, _ help: String) -> MetricNameDescriptor {
    MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
}

func wallClockSeconds() -> Double {
    let now = wallClock()
    return Double(now.seconds) + Double(now.nanoseconds) / 1e9
}
