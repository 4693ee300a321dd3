#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How pipelines sharing one incoming folder split its files: before reading a file, `watch
/// --shared` claims it by creating `<folder>/.claims/<file>` with `O_EXCL` (atomic on a local
/// filesystem and on NFSv3+); `load` removes the claim once the file is archived, deleted or
/// quarantined. Each pipeline (its `--name`, shared by its `watch` and `load`) keeps
/// `<folder>/.claims/.pipelines/<name>` fresh; a claim whose pipeline has not done so within
/// the lease, or that names another version of the file, is stale and taken over, so a killed
/// pipeline's files are read by another one, never lost.
public struct FileClaims: Sendable {
    public static let directoryName = ".claims"

    /// `<folder>/.claims`.
    public let directory: String
    public let pipeline: String
    public let leaseMilliseconds: Int64

    public init(folder: String, pipeline: String, leaseMilliseconds: Int64 = 30_000) {
        directory = (folder == "/" ? "" : folder) + "/" + Self.directoryName
        self.pipeline = pipeline
        self.leaseMilliseconds = leaseMilliseconds
    }

    /// True when `<folder>/.claims` exists: some pipeline shares this folder.
    public var isInUse: Bool { access(directory, F_OK) == 0 }

    /// Creates the claims folder and this pipeline's heartbeat.
    public func prepare() throws {
        try makeDirectories(directory + "/.pipelines")
        try beat()
    }

    /// Marks this pipeline alive now.
    public func beat() throws {
        let path = heartbeatPath(pipeline)
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("open", errno: errno, path: path) }
        defer { close(fd) }
        guard futimens(fd, nil) == 0 else { throw SystemError("futimens", errno: errno, path: path) }
    }

    /// Who holds a claim: a pipeline, on a version of the file.
    public struct Claim: Equatable, Sendable {
        public var pipeline: String
        public var inode: UInt64
    }

    public enum Outcome: Equatable, Sendable {
        /// This pipeline holds the file now (new claim, its own, or taken over from `previous`).
        case claimed(takenOverFrom: String?)
        /// A live pipeline holds it: leave the file alone.
        case heldBy(String)
    }

    /// Claims `name` (at `version`) for this pipeline.
    public func claim(_ name: String, version: FileVersion) throws -> Outcome {
        let path = claimPath(name)
        let mine = Claim(pipeline: pipeline, inode: version.inode)
        if try create(path, mine) { return .claimed(takenOverFrom: nil) }
        guard let held = readClaim(path) else {
            // Vanished (released) or unreadable mid-write: try once more, else leave it.
            return try create(path, mine) ? .claimed(takenOverFrom: nil) : .heldBy("?")
        }
        if held.pipeline == pipeline && held.inode == version.inode { return .claimed(takenOverFrom: nil) }
        if held.inode == version.inode && isAlive(held.pipeline) { return .heldBy(held.pipeline) }
        // Stale: move it aside (only one racer's rename succeeds), check it was the claim judged
        // stale and not a fresh one made meanwhile, then claim.
        let aside = path + ".stale.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        guard rename(path, aside) == 0 else { return .heldBy(held.pipeline) }
        if readClaim(aside) != held {
            if link(aside, path) != 0 {}  // restore the fresh claim unless another replaced it
            unlink(aside)
            return .heldBy(held.pipeline)
        }
        unlink(aside)
        return try create(path, mine) ? .claimed(takenOverFrom: held.pipeline) : .heldBy("?")
    }

    /// Removes the claim on `name` (the file left the folder).
    public func release(_ name: String) {
        unlink(claimPath(name))
    }

    /// True when `pipeline` marked itself alive within the lease (wall clock: hosts sharing
    /// a folder need synchronised clocks, as NFS itself does).
    public func isAlive(_ pipeline: String) -> Bool {
        var st = stat()
        guard stat(heartbeatPath(pipeline), &st) == 0 else { return false }
        #if os(Linux)
        let beat = Int64(st.st_mtim.tv_sec) * 1000 + Int64(st.st_mtim.tv_nsec) / 1_000_000
        #else
        let beat = Int64(st.st_mtimespec.tv_sec) * 1000 + Int64(st.st_mtimespec.tv_nsec) / 1_000_000
        #endif
        return wallClockMilliseconds() - beat < leaseMilliseconds
    }

    func claimPath(_ name: String) -> String { directory + "/" + name }

    func heartbeatPath(_ pipeline: String) -> String {
        directory + "/.pipelines/" + String(pipeline.map { $0 == "/" ? "_" : $0 })
    }

    /// One line `<inode> <pipeline>`, written before the claim appears under its name (a
    /// temporary name, then `link`), so a reader never sees a half-written claim.
    private func create(_ path: String, _ claim: Claim) throws -> Bool {
        let temporary = path + ".new.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        let text = Array("\(claim.inode) \(claim.pipeline)\n".utf8)
        // No fsync: a claim is a lease that a crash voids anyway.
        return try publishAtomically(at: path, temporary: temporary, .exclusive, sync: false) { fd in
            try text.withUnsafeBytes { try writeAll(fd, $0) }
        }
    }

    private func readClaim(_ path: String) -> Claim? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        guard n > 0 else { return nil }
        let text = String(decoding: buffer[0..<n], as: UTF8.self)
        guard text.hasSuffix("\n"), let space = text.firstIndex(of: " "), let inode = UInt64(text[..<space]) else { return nil }
        return Claim(pipeline: String(text[text.index(after: space)...].dropLast()), inode: inode)
    }
}

/// `host:pid`: tells pipelines apart (claims, checkpoints) when no `--name` is given.
public func defaultPipelineName() -> String {
    var host = [CChar](repeating: 0, count: 256)
    gethostname(&host, host.count - 1)
    return "\(String(cString: host)):\(getpid())"
}
