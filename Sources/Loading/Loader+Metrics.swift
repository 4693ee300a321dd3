import Ingest
import Telemetry

extension Loader {
    /// A committed batch, into the counters and histograms of `config.metrics`.
    func recordMetrics(_ outcome: BatchOutcome, committedAt: UTCTimestamp) {
        let files = outcome.files.map { file in
            LoadMetrics.CommittedFile(
                skipped: file.skipped, loaded: file.loaded, rejected: file.rejected, bytes: file.fingerprint?.bytes,
                arrivalToCommit: file.seen.map {
                    Double(committedAt.millisecondsSinceEpoch - $0.millisecondsSinceEpoch) / 1000
                })
        }
        config.metrics.committed(files: files, rejectReasons: outcome.rejectReasons)
        config.metrics.filesFinished(outcome.files.compactMap { $0.fingerprint?.name })
    }
}
