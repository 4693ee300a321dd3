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
/// Memory stays flat: `slotCount` chunks of about `chunkBytes` (a chunk holds whole lines, so
/// one longer line makes its chunk longer, for that chunk only).
public final class CSVEmitterThread {
    private let channel: Channel
    private var thread: pthread_t?

    /// Starts emitting `path` at once. Call `nextChunk()` until nil, then `finish()`.
    public init(
        path: String, name: String, seen: UTCTimestamp?, emitter: CSVFileEmitter = CSVFileEmitter(), slotCount: Int = 3,
        chunkBytes: Int = 1 << 16
    ) throws {
        channel = Channel(path: path, name: name, seen: seen, emitter: emitter, slotCount: max(slotCount, 1), chunkBytes: chunkBytes)
        let context = Unmanaged.passRetained(channel).toOpaque()
        var started = pthread_t()
        let status = pthread_create(
            &started, nil,
            { context in
                let channel = Unmanaged<Channel>.fromOpaque(context!).takeRetainedValue()
                channel.produce()
                return nil
            }, context)
        guard status == 0 else {
            Unmanaged<Channel>.fromOpaque(context).release()
            throw SystemError("pthread_create", errno: status, path: path)
        }
        thread = started
    }

    /// Stops the emitter (if still running) and waits for its thread.
    deinit {
        channel.cancel()
        join()
    }

    /// The next chunk of whole lines, valid until the next call; nil once the file is done
    /// (or failed: `finish()` says which).
    public func nextChunk() -> UnsafeRawBufferPointer? {
        channel.nextChunk()
    }

    /// Waits for the emitter's thread and returns what it read, or rethrows its error (the
    /// chunks it sent before the error were whole lines without an end-of-file marker).
    public func finish() throws -> EmittedFile {
        join()
        return try channel.outcome()
    }

    private func join() {
        guard let running = thread else { return }
        thread = nil
        pthread_join(running, nil)
    }
}

/// Thrown inside the emitter's thread when the consumer went away (`deinit` before the end).
private struct EmitterCancelled: Error {}

/// The state both threads share; every field that both touch is guarded by `lock`. A slot is
/// written only by the producer while free, and read only by the consumer while filled.
private final class Channel {
    struct Slot {
        var base: UnsafeMutableRawPointer
        var capacity: Int
        var count = 0
    }

    let path: String
    let name: String
    let seen: UTCTimestamp?
    let emitter: CSVFileEmitter
    let chunkBytes: Int
    let slotCount: Int
    let slots: UnsafeMutablePointer<Slot>
    let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    // Guarded by `lock`.
    var readIndex = 0
    var filled = 0
    var done = false
    var cancelled = false
    var result: Result<EmittedFile, any Error>?

    /// Consumer only: whether it holds the slot at `readIndex`.
    var holding = false

    init(path: String, name: String, seen: UTCTimestamp?, emitter: CSVFileEmitter, slotCount: Int, chunkBytes: Int) {
        self.path = path
        self.name = name
        self.seen = seen
        self.emitter = emitter
        self.slotCount = slotCount
        self.chunkBytes = chunkBytes
        slots = .allocate(capacity: slotCount)
        for i in 0..<slotCount {
            let capacity = chunkBytes + 4096
            (slots + i).initialize(to: Slot(base: .allocate(byteCount: capacity, alignment: 16), capacity: capacity))
        }
        pthread_mutex_init(lock, nil)
        pthread_cond_init(changed, nil)
    }

    deinit {
        for i in 0..<slotCount { slots[i].base.deallocate() }
        slots.deinitialize(count: slotCount)
        slots.deallocate()
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(lock)
        changed.deallocate()
        lock.deallocate()
    }

    /// The emitter's thread: the file into chunks, then the outcome.
    func produce() {
        let lines = ByteOutput(flushThreshold: chunkBytes) { [self] chunk in try put(chunk) }
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

    /// Producer: copies `chunk` into the next free slot, waiting while all are full.
    func put(_ chunk: UnsafeRawBufferPointer) throws {
        pthread_mutex_lock(lock)
        while filled == slotCount && !cancelled { pthread_cond_wait(changed, lock) }
        if cancelled {
            pthread_mutex_unlock(lock)
            throw EmitterCancelled()
        }
        let index = (readIndex + filled) % slotCount
        pthread_mutex_unlock(lock)

        // The slot is free: only this thread touches it until it is counted as filled.
        var slot = slots[index]
        if slot.capacity < chunk.count || (slot.capacity > 4 * (chunkBytes + 4096) && chunk.count <= chunkBytes) {
            // Grown for one long line, or back to the usual size after one.
            slot.base.deallocate()
            slot.capacity = max(chunk.count, chunkBytes + 4096)
            slot.base = .allocate(byteCount: slot.capacity, alignment: 16)
        }
        if let source = chunk.baseAddress { slot.base.copyMemory(from: source, byteCount: chunk.count) }
        slot.count = chunk.count
        slots[index] = slot

        pthread_mutex_lock(lock)
        filled += 1
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(lock)
    }

    /// Consumer: releases the chunk it held, then waits for the next; nil at the end.
    func nextChunk() -> UnsafeRawBufferPointer? {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        if holding {
            holding = false
            readIndex = (readIndex + 1) % slotCount
            filled -= 1
            pthread_cond_broadcast(changed)
        }
        while filled == 0 && !done { pthread_cond_wait(changed, lock) }
        guard filled > 0 else { return nil }
        holding = true
        let slot = slots[readIndex]
        return UnsafeRawBufferPointer(start: slot.base, count: slot.count)
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
