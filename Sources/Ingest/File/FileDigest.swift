import CLibCrypto

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SHA-256 as fetched once from libcrypto's default provider: `EVP_DigestInit_ex` with an
/// explicitly fetched algorithm skips the implicit fetch (a locked lookup) that `EVP_sha256()`
/// costs at every init, which a per-row key hash would pay per row.
nonisolated(unsafe) private let sha256Algorithm: OpaquePointer? = EVP_MD_fetch(nil, "SHA256", nil) ?? EVP_sha256()

/// A new `EVP_MD_CTX` with a SHA-256 digest started. Only allocation failure makes either call
/// fail; nothing sensible is left to do then.
private func startedSHA256Context() -> OpaquePointer {
    guard let context = EVP_MD_CTX_new(), EVP_DigestInit_ex(context, sha256Algorithm, nil) == 1 else {
        fatalError("libcrypto: cannot start a SHA-256 digest")
    }
    return context
}

/// Incremental SHA-256 over the system's libcrypto, through OpenSSL 3's `EVP_Digest*` API (the
/// `SHA256_Init`/`Update`/`Final` calls are deprecated there). Not copyable: it owns its
/// `EVP_MD_CTX`, freed with it.
public struct SHA256Hasher: ~Copyable {
    private let context: OpaquePointer

    public init() { context = startedSHA256Context() }

    deinit { EVP_MD_CTX_free(context) }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        EVP_DigestUpdate(context, base, bytes.count)
    }

    /// The 32 bytes of the digest into `digest`. The hasher is spent afterwards.
    private mutating func finalize(into digest: UnsafeMutableRawPointer) {
        var length: UInt32 = 0
        EVP_DigestFinal_ex(context, digest.assumingMemoryBound(to: UInt8.self), &length)
        assert(length == 32)
    }

    /// The digest as 64 lowercase hex digits. The hasher is spent afterwards.
    public mutating func finalizeHex() -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        digest.withUnsafeMutableBytes { finalize(into: $0.baseAddress!) }
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

/// Row keys for values that are not UUIDs: the first 128 bits of their SHA-256 (a collision
/// between two different keys is as unlikely as a SHA-256 one), one digest per row.
///
/// One context for every row, restarted by copying a started one: a fresh `EVP_MD_CTX` per row
/// cost ~1,050 instructions a digest more than the deprecated `SHA256_*` calls, a copied one
/// ~560 (callgrind, 40-byte keys).
public final class RowKeyDigest {
    private let started: OpaquePointer
    private let context: OpaquePointer

    public init() {
        started = startedSHA256Context()
        context = startedSHA256Context()
    }

    deinit {
        EVP_MD_CTX_free(context)
        EVP_MD_CTX_free(started)
    }

    /// Starts the next row's key.
    public func begin() { EVP_MD_CTX_copy_ex(context, started) }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        EVP_DigestUpdate(context, base, bytes.count)
    }

    /// The key of the bytes given since `begin()`.
    public func finish() -> RowKey {
        var digest = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        var length: UInt32 = 0
        _ = withUnsafeMutableBytes(of: &digest) {
            EVP_DigestFinal_ex(context, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), &length)
        }
        return RowKey(high: UInt64(bigEndian: digest.0), low: UInt64(bigEndian: digest.1))
    }
}
