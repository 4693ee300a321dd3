/// A failed system call, named, with its errno and, when there is one, the path it was about.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let errno: Int32
    public let path: String?

    public init(_ call: String, errno: Int32, path: String? = nil) {
        self.call = call
        self.errno = errno
        self.path = path
    }

    /// The same failure, about `path`.
    public func about(_ path: String) -> SystemError { SystemError(call, errno: errno, path: path) }

    public var description: String {
        let reason = String(cString: strerror(errno))
        if let path { return "\(path): \(reason) (\(call))" }
        return "\(call): \(reason)"
    }
}

/// The reader at the other end of our stdout went away (`| head`): exit 0 quietly.
public struct BrokenPipe: Error, CustomStringConvertible, Sendable {
    public init() {}
    public var description: String { "output closed by reader" }
}
