import Ingest

/// `watch`'s view of SIGINT/SIGTERM: the first asks it to stop after the file it is on, a second
/// exits at once (130). A thin face on `Interrupts`, which every tool shares.
public final class StopSignal: @unchecked Sendable {
    /// Readable once a stop was requested: poll it beside the inotify descriptor.
    public var fileDescriptor: Int32 { Interrupts.wakeFD }

    private init() {}

    /// Installs the handlers (a second signal exits with 130).
    public static func install() throws -> StopSignal {
        Interrupts.install(onSecond: .exit(130))
        return StopSignal()
    }

    public var isRequested: Bool { Interrupts.received > 0 }

    /// Sleeps up to `milliseconds`; true when a stop was requested meanwhile.
    public func wait(milliseconds: Int32) -> Bool {
        Interrupts.sleep(milliseconds: Int(milliseconds))
    }
}
