#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Set before the handlers are installed, then only read or bumped by the handler.
nonisolated(unsafe) private var stopPipeWrite: Int32 = -1
nonisolated(unsafe) private var stopSignalCount: Int32 = 0

private func handleStopSignal(_ signal: Int32) {
    stopSignalCount += 1
    if stopSignalCount >= 2 {
        // The second Ctrl+C: the user does not want to wait for the current file.
        _exit(130)
    }
    var byte: UInt8 = 1
    _ = write(stopPipeWrite, &byte, 1)
}

/// SIGINT and SIGTERM as a graceful stop: the first asks the current file to be finished and
/// nothing new started; the second exits at once with status 130.
///
/// The handler writes a byte to a self-pipe, so a loop blocked in `poll(2)` on inotify (or
/// sleeping between scans) wakes at once: `fileDescriptor` is the pipe's read end.
public final class StopSignal: @unchecked Sendable {
    /// Readable once a stop was asked for; poll it alongside the event source.
    public let fileDescriptor: Int32

    /// Installs the handlers for SIGINT and SIGTERM; call once, in `main`.
    public static func install() throws -> StopSignal {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw SystemError("pipe", errno: errno) }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        stopPipeWrite = fds[1]
        // A parent may start us with these blocked (some test runners and process spawners
        // do, and the mask is inherited): a blocked SIGINT would never stop watch.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGINT)
        sigaddset(&unblock, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        for sig in [SIGINT, SIGTERM] {
            var action = sigaction()
            #if os(Linux)
            action.__sigaction_handler.sa_handler = handleStopSignal
            #else
            action.__sigaction_u.__sa_handler = handleStopSignal
            #endif
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            guard sigaction(sig, &action, nil) == 0 else { throw SystemError("sigaction", errno: errno) }
        }
        return StopSignal(fileDescriptor: fds[0])
    }

    private init(fileDescriptor: Int32) {
        self.fileDescriptor = fileDescriptor
    }

    /// True once SIGINT or SIGTERM arrived.
    public var isRequested: Bool { stopSignalCount > 0 }

    /// Waits up to `milliseconds` (-1: forever) for a stop; true when one was asked for.
    public func wait(milliseconds: Int32) -> Bool {
        if isRequested { return true }
        var pfd = pollfd(fd: fileDescriptor, events: Int16(POLLIN), revents: 0)
        _ = poll(&pfd, 1, milliseconds)
        return isRequested
    }
}
