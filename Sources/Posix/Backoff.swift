/// How long to wait before each retry: `first`, multiplied by `factor` each time, at most
/// `ceiling`.
public struct Backoff: Sendable, Equatable {
    public var first: Double
    public var factor: Double
    public var ceiling: Double

    public init(first: Double, factor: Double = 2, ceiling: Double) {
        self.first = first
        self.factor = factor
        self.ceiling = ceiling
    }

    /// Reconnecting to a database: 0.5 s, 1 s, 2 s … at most 30 s.
    public static let database = Backoff(first: 0.5, ceiling: 30)

    /// The wait before retry number `attempt` (1 for the first retry).
    public func delay(attempt: Int) -> Double {
        let steps = Double(max(0, min(attempt, 64) - 1))
        return min(ceiling, first * pow(factor, steps))
    }
}

/// Why ``retrying(backoff:maxAttempts:stop:isRetryable:onRetry:operation:)`` stopped retrying.
public enum RetryEnd: Error {
    /// `maxAttempts` retries failed; the last error is kept.
    case gaveUp(attempts: Int, last: any Error)
    /// `stop` said stop during a wait; the last error is kept.
    case stopped(last: any Error)
}

/// Runs `body`; while it throws an error that `isRetryable` accepts, calls `onRetry` (to log
/// it) with the attempt number and the wait, waits as `backoff` says, and runs `body` again.
///
/// An error `isRetryable` refuses is rethrown as it is. With `maxAttempts`, the retry after that
/// many throws ``RetryEnd/gaveUp(attempts:last:)``; `stop` is asked during every wait, and ends
/// it with ``RetryEnd/stopped(last:)``.
public func retrying<R>(
    backoff: Backoff, maxAttempts: Int? = nil, stop: (() -> Bool)? = nil,
    isRetryable: (any Error) -> Bool,
    onRetry: (_ error: any Error, _ attempt: Int, _ wait: Double) -> Void = { _, _, _ in },
    operation body: () throws -> R
) throws -> R {
    var attempt = 0
    while true {
        do {
            return try body()
        } catch let error where isRetryable(error) {
            attempt += 1
            if let maxAttempts, attempt > maxAttempts { throw RetryEnd.gaveUp(attempts: attempt - 1, last: error) }
            let wait = backoff.delay(attempt: attempt)
            onRetry(error, attempt, wait)
            if !sleep(seconds: wait, stop: stop) { throw RetryEnd.stopped(last: error) }
        }
    }
}
