#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Splits a file descriptor's bytes into lines with one reusable buffer.
///
/// Each line is handed out as a pointer into the buffer, valid until the next call:
/// no per-line allocation. `read(2)` of 64 KiB plus `memchr` frames over 13 M lines/s here,
/// so framing never shows in a profile.
public final class LineReader {
    /// One unit of input.
    public enum Item {
        /// A line without its terminating `\n` (a trailing `\r` is kept).
        case line(UnsafeRawBufferPointer)
        /// A line longer than the limit; its bytes were discarded up to the next newline.
        case overlong(byteCount: Int)
    }

    public let fd: Int32
    public let maxLineLength: Int
    // `@exclusivity(unchecked)`: a reader is used by one thread, one call at a time, and the
    // dynamic checks of these class fields cost ~150 instructions per line (`next()` and
    // `lastLineUnterminated`, ~76 each, callgrind of `validate`), as much as framing the line.
    @exclusivity(unchecked) private var buffer: UnsafeMutableRawPointer
    @exclusivity(unchecked) private var capacity: Int
    @exclusivity(unchecked) private var start = 0
    @exclusivity(unchecked) private var end = 0
    @exclusivity(unchecked) private var eof = false
    /// Offset of a newline at or after `start` that `hasBufferedLine` found, or -1: `next()`
    /// then takes the line without a second `memchr` (validate asks before every line).
    @exclusivity(unchecked) private var knownNewline = -1
    /// 1-based number of the line last returned.
    @exclusivity(unchecked) public private(set) var lineNumber = 0
    /// True when the line last returned ended at end of input without a newline: what a
    /// producer killed mid-write leaves behind.
    @exclusivity(unchecked) public private(set) var lastLineUnterminated = false
    /// The next stage's pipe (our stdout), watched while waiting for input: when its reader is
    /// gone, `next()` throws ``BrokenPipe`` at once. Without it a stage idle on its input learnt
    /// that the stage after it died only at its next write, and a Kafka pipeline kept its
    /// partitions until the next message (issue 22). nil: not watched.
    public var downstream: Int32?

    public init(fd: Int32, bufferSize: Int = 1 << 16, maxLineLength: Int = 64 << 20) {
        self.fd = fd
        self.maxLineLength = maxLineLength
        self.capacity = bufferSize
        self.buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 16)
    }

    deinit { buffer.deallocate() }

    /// True when a complete line is already buffered, so `next()` will not block.
    public var hasBufferedLine: Bool {
        if knownNewline >= start { return true }
        guard end > start, let nl = memchr(buffer + start, 0x0A, end - start) else { return false }
        knownNewline = buffer.distance(to: nl)
        return true
    }

    /// True when `next()` would return without blocking: a buffered line, pending bytes, or EOF.
    public func inputReady(timeoutMilliseconds: Int32 = 0) -> Bool {
        if hasBufferedLine || eof { return true }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let n = poll(&pfd, 1, timeoutMilliseconds)
        return n > 0
    }

    /// The next line, or nil at end of input. A final line without `\n` is returned too.
    public func next() throws -> Item? {
        if knownNewline >= start {
            let lineStart = start
            let nlOffset = knownNewline
            start = nlOffset + 1
            lineNumber += 1
            // The buffer may have grown past the limit before this line's end came in.
            if nlOffset - lineStart > maxLineLength { return .overlong(byteCount: nlOffset - lineStart) }
            return .line(UnsafeRawBufferPointer(start: buffer + lineStart, count: nlOffset - lineStart))
        }
        knownNewline = -1
        var searchFrom = start
        var discarding = 0
        while true {
            if end > searchFrom, let nl = memchr(buffer + searchFrom, 0x0A, end - searchFrom) {
                let nlOffset = buffer.distance(to: nl)
                let lineStart = start
                start = nlOffset + 1
                lineNumber += 1
                if discarding > 0 || nlOffset - lineStart > maxLineLength {
                    return .overlong(byteCount: discarding + (nlOffset - lineStart))
                }
                return .line(UnsafeRawBufferPointer(start: buffer + lineStart, count: nlOffset - lineStart))
            }
            if eof {
                guard end > start || discarding > 0 else { return nil }
                let lineStart = start
                start = end
                lineNumber += 1
                lastLineUnterminated = true
                if discarding > 0 || end - lineStart > maxLineLength { return .overlong(byteCount: discarding + (end - lineStart)) }
                return .line(UnsafeRawBufferPointer(start: buffer + lineStart, count: end - lineStart))
            }
            // Keep the partial line, make room, read more.
            if end - start > maxLineLength {
                discarding += end - start
                start = 0
                end = 0
            } else if start > 0 {
                let pending = end - start
                if pending > 0 { memmove(buffer, buffer + start, pending) }
                start = 0
                end = pending
            }
            searchFrom = end
            if end == capacity {
                let grown = capacity * 2
                let fresh = UnsafeMutableRawPointer.allocate(byteCount: grown, alignment: 16)
                fresh.copyMemory(from: buffer, byteCount: end)
                buffer.deallocate()
                buffer = fresh
                capacity = grown
            }
            if let downstream { try waitForInput(watching: downstream) }
            let n = try readRetrying(fd, buffer + end, capacity - end)
            if n == 0 { eof = true } else { end += n }
        }
    }

    /// Waits until `fd` can be read (data, end of input, or an error `read` reports); throws
    /// ``BrokenPipe`` when `downstream`'s reader closed it meanwhile. POLLERR on a pipe's write
    /// end means no reader is left; a file or /dev/null reports nothing.
    private func waitForInput(watching downstream: Int32) throws {
        var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: downstream, events: 0, revents: 0)]
        while true {
            fds[0].revents = 0
            fds[1].revents = 0
            if poll(&fds, 2, -1) < 0 {
                if errno == EINTR { continue }
                throw SystemError("poll", errno: errno)
            }
            if fds[1].revents & Int16(POLLERR | POLLHUP) != 0 { throw BrokenPipe() }
            if fds[0].revents != 0 { return }
        }
    }

    /// Shrinks the buffer back after a very long line, so memory stays flat.
    public func compact(to size: Int = 1 << 16) {
        guard capacity > size * 4, end - start <= size else { return }
        let fresh = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        let pending = end - start
        if pending > 0 { fresh.copyMemory(from: buffer + start, byteCount: pending) }
        buffer.deallocate()
        buffer = fresh
        capacity = size
        knownNewline = -1
        start = 0
        end = pending
    }
}

/// `read(2)`, retried on EINTR.
@inline(__always)
func readRetrying(_ fd: Int32, _ ptr: UnsafeMutableRawPointer, _ count: Int) throws -> Int {
    while true {
        let n = read(fd, ptr, count)
        if n >= 0 { return n }
        if errno == EINTR { continue }
        throw SystemError("read", errno: errno)
    }
}
