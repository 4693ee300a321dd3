import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SIGINT/SIGTERM handling for pipeline stages: the first signal is counted (and wakes a
/// self-pipe), so the stage can finish what it holds; a second one ends the process at once.
///
/// In a shell pipeline Ctrl+C reaches every stage together: the source stops producing and the
/// others drain their input to EOF. A stage that sleeps or waits polls `wakeFD` alongside its
/// own descriptors, so the first signal interrupts the wait promptly.
public enum Interrupts {
    public enum SecondSignal: Sendable {
        /// `_exit(code)` from the handler: no cleanup, nothing more written.
        case exit(Int32)
        /// Only counted, like the first.
        case count
    }

    /// Installs the handlers (once per process; later calls change only the second action).
    /// Handlers restart interrupted system calls, so blocking reads carry on draining.
    public static func install(signals: [Int32] = [SIGINT, SIGTERM], onSecond: SecondSignal = .exit(130)) {
        let code: Int32 =
            switch onSecond {
            case .exit(let code): code
            case .count: -1
            }
        secondExitCode.store(code, ordering: .relaxed)
        if wakeWrite.load(ordering: .relaxed) < 0 {
            var fds: [Int32] = [-1, -1]
            if pipe(&fds) == 0 {
                for fd in fds {
                    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                }
                wakeRead.store(fds[0], ordering: .relaxed)
                wakeWrite.store(fds[1], ordering: .relaxed)
            }
        }
        _ = signalCount.load(ordering: .relaxed)  // initialise the globals outside the handler
        // A parent may have started us with these signals blocked (Foundation's `Process`
        // passes on its thread's mask): then Ctrl+C would never arrive.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for signal in signals { sigaddset(&unblock, signal) }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        for signal in signals {
            var action = sigaction()
            #if canImport(Glibc)
            action.__sigaction_handler.sa_handler = interruptHandler
            #else
            action.__sigaction_u.__sa_handler = interruptHandler
            #endif
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(signal, &action, nil)
        }
    }

    /// Signals received since `install`.
    public static var received: Int { signalCount.load(ordering: .relaxed) }

    /// A descriptor that becomes readable at the first signal (for `poll`); -1 before `install`.
    public static var wakeFD: Int32 { wakeRead.load(ordering: .relaxed) }

    /// Sleeps up to `milliseconds`, returning early (true) when a signal has arrived.
    @discardableResult
    public static func sleep(milliseconds: Int) -> Bool {
        if received > 0 { return true }
        var remaining = milliseconds
        let deadline = monotonicMilliseconds() + Int64(milliseconds)
        while remaining > 0 {
            var pfd = pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, wakeFD >= 0 ? 1 : 0, Int32(min(remaining, Int(Int32.max))))
            if received > 0 { return true }
            remaining = Int(deadline - monotonicMilliseconds())
        }
        return received > 0
    }
}

private let signalCount = Atomic<Int>(0)
private let secondExitCode = Atomic<Int32>(130)
private let wakeRead = Atomic<Int32>(-1)
private let wakeWrite = Atomic<Int32>(-1)

/// Async-signal-safe: atomics, `write(2)` and `_exit(2)` only.
private func interruptHandler(_ signal: Int32) {
    let previous = signalCount.add(1, ordering: .relaxed).oldValue
    if previous == 0 {
        let fd = wakeWrite.load(ordering: .relaxed)
        if fd >= 0 {
            var byte: UInt8 = 1
            _ = write(fd, &byte, 1)
        }
    } else {
        let code = secondExitCode.load(ordering: .relaxed)
        if code >= 0 { _exit(code) }
    }
}
