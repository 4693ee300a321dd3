/// A POSIX thread running one closure, joined by its creator.
///
/// Ownership: `body` runs on the new thread only; the creator touches nothing the closure
/// captured until ``join()`` returns (which orders the accesses), unless the captured state
/// guards itself.
public final class JoinableThread: @unchecked Sendable {
    // @unchecked: `body` is read by the new thread once and cleared by it; `thread` is written
    // before the new thread can be joined and read only by the creator.
    private var body: (() -> Void)?
    private var thread = pthread_t()
    private var joined = false

    /// Starts `body` on a new thread. `blockingSignals`: the thread starts with every signal
    /// blocked, so that signals reach the stage's own threads (its first Ctrl+C drains).
    public init(blockingSignals: Bool = false, _ body: @escaping () -> Void) throws {
        self.body = body
        var previous = sigset_t()
        if blockingSignals {
            var all = sigset_t()
            sigfillset(&all)
            pthread_sigmask(SIG_SETMASK, &all, &previous)
        }
        defer { if blockingSignals { pthread_sigmask(SIG_SETMASK, &previous, nil) } }
        let box = Unmanaged.passRetained(self).toOpaque()
        let started = pthread_create(
            &thread, nil,
            { raw in
                guard let raw else { return nil }
                let me = Unmanaged<JoinableThread>.fromOpaque(raw).takeRetainedValue()
                let work = me.body
                me.body = nil
                work?()
                return nil
            }, box)
        if started != 0 {
            Unmanaged<JoinableThread>.fromOpaque(box).release()
            throw SystemError("pthread_create", errno: started)
        }
    }

    /// Waits for the thread to end; later calls return at once.
    public func join() {
        guard !joined else { return }
        joined = true
        pthread_join(thread, nil)
    }
}
