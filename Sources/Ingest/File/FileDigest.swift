import CLibCrypto

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Incremental SHA-256 over the system's libcrypto.
public struct SHA256Hasher {
    fileprivate var context = SHA256_CTX()

    public init() { SHA256_Init(&context) }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        SHA256_Update(&context, base, bytes.count)
    }

    /// The digest as 64 lowercase hex digits. The hasher is spent afterwards.
    public mutating func finalizeHex() -> String {
        var digest = [UInt8](repeating: 0, count: Int(SHA256_DIGEST_LENGTH))
        SHA256_Final(&digest, &context)
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for b in digest {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A file's content identity as the end-of-file marker carries it: its size and the SHA-256 of
/// its bytes.
public struct FileDigest: Hashable, Sendable {
    public var bytes: Int64
    public var sha256: String

    public init(bytes: Int64, sha256: String) {
        self.bytes = bytes
        self.sha256 = sha256
    }

    /// Reads the regular file at `path` once, in 64 KiB chunks. A final symlink is refused
    /// (`ELOOP`) unless `followingSymlink`: `load` only ever moves the file it read, while
    /// `watch` may stream a link inside its folder.
    public static func of(path: String, followingSymlink: Bool = false) throws -> FileDigest {
        let fd = open(path, O_RDONLY | O_CLOEXEC | (followingSymlink ? 0 : O_NOFOLLOW))
        guard fd >= 0 else { throw SystemError("open", errno: errno, path: path) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SystemError("fstat", errno: errno, path: path) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw SystemError("open", errno: EINVAL, path: path) }
        let size = 1 << 16
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        defer { buffer.deallocate() }
        var hasher = SHA256Hasher()
        var total: Int64 = 0
        while true {
            let n: Int
            do { n = try readRetrying(fd, buffer, size) } catch let error as SystemError {
                throw SystemError(error.call, errno: error.errno, path: path)
            }
            if n == 0 { break }
            hasher.update(UnsafeRawBufferPointer(start: buffer, count: n))
            total += Int64(n)
        }
        return FileDigest(bytes: total, sha256: hasher.finalizeHex())
    }
}

extension SHA256Hasher {
    /// The first 128 bits of the digest: a row key for values that are not UUIDs (a collision
    /// between two different keys is as unlikely as a SHA-256 one).
    public mutating func finalizeRowKey() -> RowKey {
        var digest = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &digest) { SHA256_Final($0.baseAddress!.assumingMemoryBound(to: UInt8.self), &context) }
        return RowKey(high: UInt64(bigEndian: digest.0), low: UInt64(bigEndian: digest.1))
    }
}
