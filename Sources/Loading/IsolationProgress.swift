import Logging
import Posix
import Telemetry

/// What an isolation tells while it runs, so a big file in isolation does not look stalled
/// (issue 25): `ingest_rows_isolating` and `ingest_rows_isolating_left` (the batch's rows, and
/// those not through isolation yet), and INFO lines naming the batch's files at the start, every
/// ``logEvery`` seconds, and at the end. Owned by the committing thread; the metrics lock themselves.
struct IsolationProgress {
    static let logEvery = 5.0
    let metrics: LoadMetrics
    /// The commit's handle in the metrics (`LoadMetrics.commitStarted`).
    let inFlight: Int
    let logger: Logger
    let files: String
    let rows: Int
    private(set) var left: Int
    private var step = ""
    private let started = monotonicSeconds()
    private var lastLog: Double

    init(metrics: LoadMetrics, inFlight: Int, logger: Logger, files: String, rows: Int) {
        (self.metrics, self.inFlight, self.logger, self.files, self.rows, left) = (metrics, inFlight, logger, files, rows, rows)
        lastLog = started
        metrics.isolationStarted(inFlight, rows: rows)
        logger.info("\(files): isolating \(rows) rows")
    }

    /// A new step (its words go in the periodic line), with the rows not through yet.
    mutating func begin(_ step: String, left: Int) {
        self.step = step
        self.left = left
        metrics.isolationProgress(inFlight, left: left)
        tick()
    }

    /// `count` more rows are through.
    mutating func advance(by count: Int) {
        guard count > 0 else { return }
        left = max(0, left - count)
        metrics.isolationProgress(inFlight, left: left)
        tick()
    }

    /// Logs how far it is, when ``logEvery`` seconds have passed since the last line.
    mutating func tick() {
        let now = monotonicSeconds()
        guard now - lastLog >= Self.logEvery else { return }
        lastLog = now
        logger.info("\(files): isolating \(rows) rows, \(left) left (\(step)), \(Int(now - started)) s so far")
    }

    func finish(refused: Int) {
        metrics.isolationProgress(inFlight, left: 0)
        let tenths = Int(((monotonicSeconds() - started) * 10).rounded())
        logger.info("\(files): isolated \(rows) rows in \(tenths / 10).\(tenths % 10) s, \(refused) refused")
    }
}
