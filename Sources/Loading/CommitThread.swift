import Ingest
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One batch committing on its own thread while `load` keeps reading the next one, so our
/// reading and the server's COPY overlap instead of adding up.
///
/// Bounded by design: the loader starts one per session only after that session's previous one
/// was waited for, so at most one batch per session (two in all) is in flight and one is filling.
final class CommitThread: @unchecked Sendable {
    // @unchecked: `work` and `failure` are touched by the new thread between pthread_create and
    // pthread_join only, and by the creating thread after the join (which orders the accesses).
    private var work: (() throws -> Void)?
    private var failure: (any Error)?
    private var thread = pthread_t()
    private let finished = Atomic<Bool>(false)

    /// Starts `work` on a new thread.
    init(_ work: @escaping () throws -> Void) throws {
        self.work = work
        let box = Unmanaged.passRetained(self).toOpaque()
        let started = pthread_create(
            &thread, nil,
            { raw in
                let me = Unmanaged<CommitThread>.fromOpaque(raw!).takeRetainedValue()
                do { try me.work?() } catch { me.failure = error }
                me.work = nil
                me.finished.store(true, ordering: .releasing)
                return nil
            }, box)
        if started != 0 {
            Unmanaged<CommitThread>.fromOpaque(box).release()
            throw SystemError("pthread_create", errno: started)
        }
    }

    /// True once the work has ended (``wait()`` then returns at once); from any thread.
    var isFinished: Bool { finished.load(ordering: .acquiring) }

    /// Waits for the work to end; rethrows what it threw.
    func wait() throws {
        pthread_join(thread, nil)
        if let failure { throw failure }
    }
}
