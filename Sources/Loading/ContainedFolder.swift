import Ingest
import Postgres

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A folder that a tool may write into, and the rule that keeps every path inside it.
///
/// A source file name arrives as text on stdin; whatever a line claims (`../../etc/passwd`,
/// `/tmp/x`, a name with NUL), only a plain name of this folder is ever touched.
public struct ContainedFolder: Sendable {
    public let path: String

    public init(_ path: String) {
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.path = trimmed
    }

    /// Why `name` cannot name a file directly inside a folder, or nil when it can.
    public static func problem(with name: String) -> String? {
        if name.isEmpty { return "empty file name" }
        if name == "." || name == ".." { return "not a file name" }
        if name.utf8.contains(0x2F) { return "contains '/'" }
        if name.utf8.contains(0) { return "contains a NUL byte" }
        if name.utf8.count > 255 { return "longer than 255 bytes" }
        return nil
    }

    /// The path of `name` inside this folder; nil when `name` is not a plain file name.
    public func child(_ name: String) -> String? {
        ContainedFolder.problem(with: name) == nil ? path + "/" + name : nil
    }

    /// Creates the folder (and parents) if missing.
    public func create() throws {
        try makeDirectories(path)
    }

    /// Writes `bytes` to `name` atomically: a hidden temporary file, fsync, then rename over
    /// any earlier version, so a replay rewrites the same file instead of appending twice.
    /// A full disk is waited out (``waitingForSpace(at:needing:logger:_:)``), the whole write
    /// repeated from the start.
    public func writeAtomically(_ name: String, _ bytes: [UInt8]) throws {
        try writeAtomically(name, expectedBytes: bytes.count) { write in try bytes.withUnsafeBytes { try write($0) } }
    }

    /// Writes what `produce` passes to its writer as the file `name`, atomically (a temporary
    /// file, fsync, rename) and in 64 KiB pieces, so a file of any size never sits in memory.
    /// On a full disk the whole file is written again once there is room: `produce` must give
    /// the same bytes each time.
    public func writeAtomically(
        _ name: String, expectedBytes: Int = 1 << 16,
        _ produce: (_ write: (UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) throws {
        guard let target = child(name) else { throw SystemError("write", errno: EINVAL, path: name) }
        try waitingForSpace(at: target, needing: expectedBytes) {
            try create()
            try writeAtomicallyOnce(target: target, temporary: path + "/." + name + ".tmp", produce)
        }
    }

    private func writeAtomicallyOnce(
        target: String, temporary: String, _ produce: (_ write: (UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) throws {
        try publishAtomically(at: target, temporary: temporary, .replacing) { fd in
            let chunk = 1 << 16
            let pending = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 16)
            defer { pending.deallocate() }
            var count = 0
            try produce { bytes in
                if count + bytes.count > chunk && count > 0 {
                    try writeAll(fd, UnsafeRawBufferPointer(start: pending, count: count))
                    count = 0
                }
                if bytes.count >= chunk {
                    try writeAll(fd, bytes)
                } else if let base = bytes.baseAddress {
                    (pending + count).copyMemory(from: base, byteCount: bytes.count)
                    count += bytes.count
                }
            }
            if count > 0 { try writeAll(fd, UnsafeRawBufferPointer(start: pending, count: count)) }
        }
    }

    /// Makes renames in the folder durable.
    public func syncDirectory() {
        Posix.syncDirectory(path)
    }
}
