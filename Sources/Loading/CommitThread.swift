import Ingest
import Synchronization

/// One batch committing on its own thread while `load` keeps reading the next one, so our
/// reading and the server's COPY overlap instead of adding up.
///
/// Bounded by design: the loader starts one per session only after that session's previous one
/// was waited for, so at most one batch per session (two in all) is in flight and one is filling.
final class CommitThread: @unchecked Sendable {
    // @unchecked: `failure` is written by the new thread before it ends and read by the
    // creating thread after the join (which orders the accesses).
    private var failure: (any Error)?
    private let finished = Atomic<Bool>(false)
    private var thread: JoinableThread?

    /// Starts `work` on a new thread.
    init(_ work: @escaping () throws -> Void) throws {
        thread = try JoinableThread { [self] in
            do { try work() } catch { failure = error }
            finished.store(true, ordering: .releasing)
        }
    }

    /// True once the work has ended (``wait()`` then returns at once); from any thread.
    var isFinished: Bool { finished.load(ordering: .acquiring) }

    /// Waits for the work to end; rethrows what it threw.
    func wait() throws {
        thread?.join()
        if let failure { throw failure }
    }
}
