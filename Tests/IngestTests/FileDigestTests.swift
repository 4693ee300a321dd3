import Foundation
import Testing

@testable import Ingest

/// SHA-256 through the system libcrypto, against the FIPS 180-2 test vectors.
@Suite struct FileDigestTests {
    static let vectors: [(String, String)] = [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (
            "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        ),
    ]

    @Test(arguments: vectors)
    func knownDigests(_ input: String, _ expected: String) {
        var hasher = SHA256Hasher()
        Array(input.utf8).withUnsafeBytes { hasher.update($0) }
        #expect(hasher.finalizeHex() == expected)
    }

    @Test func aMillionAsFedInUnevenPieces() {
        var hasher = SHA256Hasher()
        let piece = [UInt8](repeating: UInt8(ascii: "a"), count: 7919)
        var left = 1_000_000
        while left > 0 {
            let n = min(left, piece.count - left % 13)
            piece.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            left -= n
        }
        #expect(hasher.finalizeHex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func aFileIsDigestedOnceAndASymlinkOnlyWhenAsked() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("digest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("a.csv")
        try Data("abc".utf8).write(to: file)
        let link = dir.appendingPathComponent("link.csv")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: file)

        let digest = try FileDigest.of(path: file.path)
        #expect(digest == FileDigest(bytes: 3, sha256: Self.vectors[1].1))
        #expect(try FileDigest.of(path: link.path, followingSymlink: true) == digest)
        #expect(throws: SystemError.self) { try FileDigest.of(path: link.path) }
        #expect(throws: SystemError.self) { try FileDigest.of(path: dir.path) }
        #expect(throws: SystemError.self) { try FileDigest.of(path: dir.appendingPathComponent("missing").path) }
    }
}
