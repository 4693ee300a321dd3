import Ingest

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `CSVFileEmitter` on a thread of its own, handing its protocol lines to the caller's thread in
/// whole-line chunks through a few fixed buffers: what `watch --once FILE | validate` does with
/// two processes, minus the pipe.
///
/// `validate FILE.csv` ran the emitter and the validator on one thread at 0.70 of the two
/// processes' speed on 2 cores (bin/bench); this way the emitting and the validating overlap.
/// Memory stays flat: `slotCount + 1` buffers of about `chunkBytes`, handed over whole (no
/// copy): the emitter fills one while the caller reads the others. A chunk holds whole lines, so
/// one longer line makes its buffer longer, until the buffer comes round again.
public final class CSVEmitterThread {
    private let channel: Channel
    private let thread: JoinableThread

    /// Starts emitting `path` at once. Call `withNextChunk` until it returns false, then `finish()`.
    public init(
        path: String, name: String, seen: UTCTimestamp?, emitter: CSVFileEmitter = CSVFileEmitter(), slotCount: Int = 2,
        chunkBytes: Int = 1 << 16
    ) throws {
        let channel = Channel(path: path, name: name, seen: seen, emitter: emitter, slotCount: max(slotCount, 1), chunkBytes: chunkBytes)
        self.channel = channel
        // The channel guards what both threads touch (its doc comment), as JoinableThread asks.
        do { thread = try JoinableThread { channel.produce() } } catch let error as SystemError { throw error.about(path) }
    }

    /// Stops the emitter (if still running) and waits for its thread.
    deinit {
        channel.cancel()
        thread.join()
    }

    /// Calls `body` with the next chunk of whole lines; false (without calling it) once the
    /// file is done or failed (`finish()` says which).
    public func withNextChunk(_ body: (UnsafeRawBufferPointer) throws -> Void) rethrows -> Bool {
        guard let index = channel.takeChunk() else { return false }
        defer { channel.release() }
        try channel.slots[index].withUnsafeBytes(body)
        return true
    }

    /// Waits for the emitter's thread and returns what it read, or rethrows its error (the
    /// chunks it sent before the error were whole lines without an end-of-file marker).
    public func finish() throws -> EmittedFile {
        thread.join()
        return try channel.outcome()
    }
}

/// Thrown inside the emitter's thread when the consumer went away (`deinit` before the end).
private struct EmitterCancelled: Error {}

/// The state both threads share; every field that both touch is guarded by `lock`. A slot is
/// touched only by the producer while free, and only by the consumer while filled.
private final class Channel {
    let path: String
    let name: String
    let seen: UTCTimestamp?
    let emitter: CSVFileEmitter
    let chunkBytes: Int
    let slotCount: Int
    /// Filled buffers waiting for the consumer, from `readIndex` on; the others are empty.
    let slots: UnsafeMutablePointer<[UInt8]>
    let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    // Guarded by `lock`.
    var readIndex = 0
    var filled = 0
    var done = false
    var cancelled = false
    var result: Result<EmittedFile, any Error>?

    init(path: String, name: String, seen: UTCTimestamp?, emitter: CSVFileEmitter, slotCount: Int, chunkBytes: Int) {
        self.path = path
        self.name = name
        self.seen = seen
        self.emitter = emitter
        self.slotCount = slotCount
        self.chunkBytes = chunkBytes
        slots = .allocate(capacity: slotCount)
        slots.initialize(repeating: [], count: slotCount)
        pthread_mutex_init(lock, nil)
        pthread_cond_init(changed, nil)
    }

    deinit {
        slots.deinitialize(count: slotCount)
        slots.deallocate()
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(lock)
        changed.deallocate()
        lock.deallocate()
    }

    /// The emitter's thread: the file into chunks, then the outcome.
    func produce() {
        let lines = ByteOutput(handingOverAt: chunkBytes) { [self] bytes in try put(&bytes) }
        let outcome: Result<EmittedFile, any Error>
        do {
            let emitted = try emitter.emit(path: path, name: name, seen: seen, into: lines)
            try lines.flush()
            outcome = .success(emitted)
        } catch {
            outcome = .failure(error)
        }
        pthread_mutex_lock(lock)
        result = outcome
        done = true
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(lock)
    }

    /// Producer: swaps `bytes` into the next free slot (waiting while none is free) and takes
    /// that slot's emptied buffer in exchange.
    func put(_ bytes: inout [UInt8]) throws {
        pthread_mutex_lock(lock)
        while filled == slotCount && !cancelled { pthread_cond_wait(changed, lock) }
        if cancelled {
            pthread_mutex_unlock(lock)
            throw EmitterCancelled()
        }
        let index = (readIndex + filled) % slotCount
        pthread_mutex_unlock(lock)

        // The slot is free: only this thread touches it until it is counted as filled.
        swap(&bytes, &slots[index])
        let usual = chunkBytes + 4096
        // A buffer grown for one long line shrinks back when it comes round again.
        bytes.removeAll(keepingCapacity: bytes.capacity <= 4 * usual)
        if bytes.capacity < usual { bytes.reserveCapacity(usual) }

        pthread_mutex_lock(lock)
        filled += 1
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(lock)
    }

    /// Consumer: waits for a filled slot; its index, or nil at the end. The slot stays the
    /// consumer's until `release()`.
    func takeChunk() -> Int? {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        while filled == 0 && !done { pthread_cond_wait(changed, lock) }
        return filled > 0 ? readIndex : nil
    }

    /// Consumer: gives the slot taken by `takeChunk()` back to the producer.
    func release() {
        pthread_mutex_lock(lock)
        readIndex = (readIndex + 1) % slotCount
        filled -= 1
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(lock)
    }

    /// Consumer: tells the producer to stop at its next chunk.
    func cancel() {
        pthread_mutex_lock(lock)
        cancelled = true
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(lock)
    }

    /// After the producer's thread ended.
    func outcome() throws -> EmittedFile {
        pthread_mutex_lock(lock)
        let outcome = result
        pthread_mutex_unlock(lock)
        guard let outcome else { throw EmitterCancelled() }
        return try outcome.get()
    }
}
