import Testing

@testable import Telemetry

@Suite struct LoadMetricsTests {
    func samples(_ metrics: LoadMetrics) -> [String: Double] {
        var out: [String: Double] = [:]
        for line in String(decoding: metrics.exposition(), as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
            if let space = line.lastIndex(of: " "), let v = Double(line[line.index(after: space)...]) {
                out[String(line[..<space])] = v
            }
        }
        return out
    }

    /// Two sessions' transactions at once: the gauges are their sums, and 0 once both ended.
    @Test func transactionsInFlightAndTheirIsolation() {
        let metrics = LoadMetrics()
        #expect(samples(metrics)["ingest_rows_committing"] == 0)
        let a = metrics.commitStarted(rows: 1_000)
        let b = metrics.commitStarted(rows: 30)
        #expect(a != b)
        metrics.isolationStarted(a, rows: 900)
        metrics.isolationProgress(a, left: 400)
        var s = samples(metrics)
        #expect(s["ingest_rows_committing"] == 1_030)
        #expect(s["ingest_rows_isolating"] == 900)
        #expect(s["ingest_rows_isolating_left"] == 400)
        #expect(s["ingest_batches_isolated_total"] == 1)
        metrics.commitEnded(b)
        s = samples(metrics)
        #expect(s["ingest_rows_committing"] == 1_000)
        #expect(s["ingest_rows_isolating"] == 900)
        metrics.commitEnded(a)
        s = samples(metrics)
        #expect(s["ingest_rows_committing"] == 0)
        #expect(s["ingest_rows_isolating"] == 0)
        #expect(s["ingest_rows_isolating_left"] == 0)
        #expect(s["ingest_batches_isolated_total"] == 1)
    }

    @Test func committedBatchMovesCountersAndHistograms() {
        let metrics = LoadMetrics()
        for _ in 0..<7 { metrics.rowRead() }
        metrics.committed(
            files: [
                .init(skipped: false, loaded: 5, rejected: 2, bytes: 700, arrivalToCommit: 0.3),
                .init(skipped: true, loaded: 0, rejected: 0, bytes: 100, arrivalToCommit: 0.1),
            ],
            rejectReasons: ["must be > 0": 1, "expected 6 fields, found 2": 1])
        let s = samples(metrics)
        #expect(s["ingest_rows_read_total"] == 7)
        #expect(s["ingest_rows_loaded_total"] == 5)
        #expect(s["ingest_files_committed_total"] == 1)
        #expect(s["ingest_files_skipped_total"] == 1)
        #expect(s["ingest_source_bytes_committed_total"] == 700)
        #expect(s["ingest_batches_total"] == 1)
        #expect(s["ingest_batch_rows_count"] == 1)
        #expect(s["ingest_batch_rows_sum"] == 7)
        #expect(s["ingest_commit_latency_seconds_count"] == 1)
        #expect(s[#"ingest_commit_latency_seconds_bucket{le="0.5"}"#] == 1)
        #expect(s[#"ingest_commit_latency_seconds_bucket{le="0.25"}"#] == 0)
        #expect(s[#"ingest_rows_rejected_total{reason="must be > N"}"#] == 1)
        #expect(s[#"ingest_rows_rejected_total{reason="expected N fields, found N"}"#] == 1)
        #expect((s["ingest_last_commit_timestamp_seconds"] ?? 0) > 1_700_000_000)
    }

    @Test func backlogIsTheFolderPlusTheFilesHeld() {
        let metrics = LoadMetrics()
        #expect(samples(metrics)["ingest_files_pending"] == 0)
        metrics.folderProgress(filesPending: 2, bytesPending: 500, oldestPendingSince: wallClockSeconds() - 30)
        metrics.fileStarted("a.csv")
        var s = samples(metrics)
        #expect(s["ingest_files_pending"] == 3)
        #expect(s["ingest_bytes_pending"] == 500)
        #expect((s["ingest_oldest_pending_age_seconds"] ?? 0) >= 29)
        metrics.folderProgress(filesPending: 0, bytesPending: 0, oldestPendingSince: nil)
        metrics.filesFinished(["a.csv"])
        s = samples(metrics)
        #expect(s["ingest_files_pending"] == 0)
        #expect(s["ingest_oldest_pending_age_seconds"] == 0)
    }
}
