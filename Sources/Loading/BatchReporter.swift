import Ingest
import Logging
import Synchronization
import Telemetry

/// What a committed batch changes in `load`, from whichever thread committed it: the totals,
/// the source files' disposition (archive, quarantine), the batch's log lines and metrics. One
/// lock over all of it, so two sessions' batches never interleave their moves or lines.
final class BatchReporter: Sendable {
    private let state = Mutex(LoaderTotals())
    private let disposition: FileDisposition
    private let metrics: LoadMetrics
    private let logger: Logger

    init(disposition: FileDisposition, metrics: LoadMetrics, logger: Logger) {
        self.disposition = disposition
        self.metrics = metrics
        self.logger = logger
    }

    /// Totals so far.
    var totals: LoaderTotals { state.withLock { $0 } }

    /// Changes the totals (files abandoned or incomplete, counted by the reading thread).
    func count(_ change: (inout LoaderTotals) -> Void) { state.withLock { change(&$0) } }

    /// A batch committed `elapsed` seconds after it started: its files disposed of, then said.
    func committed(_ outcome: BatchOutcome, elapsed: Double, committedAt: UTCTimestamp) {
        state.withLock { totals in
            disposition.apply(outcome, totals: &totals)
            report(outcome, elapsed: elapsed, committedAt: committedAt, totals: &totals)
        }
    }

    private func report(_ outcome: BatchOutcome, elapsed: Double, committedAt: UTCTimestamp, totals: inout LoaderTotals) {
        let n = totals.batches
        totals.batches += 1
        totals.filesCommitted +=
            outcome.files.filter { $0.fingerprint != nil && !$0.skipped && $0.quarantine == nil && $0.quarantined == nil }.count
        totals.filesSkipped += outcome.files.filter(\.skipped).count
        totals.filesQuarantined += outcome.files.filter { $0.quarantined != nil && !$0.skipped }.count
        totals.rowsLoaded += outcome.loaded
        totals.rowsRejected += outcome.rejected
        for file in outcome.files where file.skipped {
            logger.info(
                "\(file.fingerprint?.name ?? "stdin batch"): already \(file.quarantined == nil ? "committed" : "quarantined"), skipped")
        }
        let processed = outcome.loaded + outcome.rejected
        logger.info("Batch \(n): Processed \(processed) records")
        var line = "Valid: \(outcome.loaded), Invalid: \(outcome.rejected)"
        let rate = elapsed > 0 ? Int(Double(processed) / elapsed) : processed
        line += "; \(outcome.files.filter { $0.fingerprint != nil }.count) files in \(Int(elapsed * 1000)) ms, \(rate) rows/s"
        let delays = outcome.files.compactMap { file -> Int64? in
            guard let arrived = file.seen else { return nil }
            return committedAt.millisecondsSinceEpoch - arrived.millisecondsSinceEpoch
        }
        if let worst = delays.max() { line += ", arrival to commit \(worst) ms" }
        logger.info("\(line)")
        recordMetrics(outcome, committedAt: committedAt)
    }

    /// A committed batch, into the counters and histograms of the metrics.
    private func recordMetrics(_ outcome: BatchOutcome, committedAt: UTCTimestamp) {
        let files = outcome.files.map { file in
            LoadMetrics.CommittedFile(
                skipped: file.skipped, loaded: file.loaded, rejected: file.rejected, bytes: file.fingerprint?.bytes,
                arrivalToCommit: file.seen.map {
                    Double(committedAt.millisecondsSinceEpoch - $0.millisecondsSinceEpoch) / 1000
                })
        }
        metrics.committed(files: files, rejectReasons: outcome.rejectReasons)
        metrics.filesFinished(outcome.files.compactMap { $0.fingerprint?.name })
    }
}
