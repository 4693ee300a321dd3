import Testing

@testable import Ingest

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The hand-tuned pieces of the decode side against slow, obvious references.
@Suite struct DecodeFastPathTests {
    /// Every string length and every position of a special byte, near and far from the end
    /// of the line: the word-at-a-time run must stop exactly where a byte loop would.
    @Test func stringScanStopsWhereAByteLoopWould() throws {
        let specials: [(text: String, valid: Bool)] = [
            ("\\\"", true), ("\\\\", true), ("\\n", true), ("\\u00e9", true), ("é", true), ("€", true), ("😀", true),
            ("\u{1}", false), ("\t", false), ("\\x", false),
        ]
        for length in 0..<40 {
            for tail in ["}", ",\"z\":1}", ",\"zzzzzzzzzzzzzzzz\":\"zzzzzzzzzzzz\"}"] {
                let plain = String(repeating: "a", count: length)
                try expectScan("{\"k\":\"\(plain)\"\(tail)", value: "\"\(plain)\"", escaped: false)
                for position in 0...length {
                    for special in specials {
                        let text = String(plain.prefix(position)) + special.text + String(plain.dropFirst(position))
                        let line = "{\"k\":\"\(text)\"\(tail)"
                        if special.valid {
                            try expectScan(line, value: "\"\(text)\"", escaped: special.text.hasPrefix("\\"))
                        } else {
                            var scanner = JSONObjectScanner()
                            let bytes = Array(line.utf8)
                            #expect(throws: JSONSyntaxError.self, "\(line)") { try bytes.withUnsafeBytes { try scanner.scan($0) } }
                        }
                    }
                }
            }
        }
        // A string cut off by the end of the line, at every length.
        for length in 0..<20 {
            var scanner = JSONObjectScanner()
            let bytes = Array("{\"k\":\"\(String(repeating: "a", count: length))".utf8)
            #expect(throws: JSONSyntaxError.self) { try bytes.withUnsafeBytes { try scanner.scan($0) } }
        }
    }

    private func expectScan(_ line: String, value: String, escaped: Bool) throws {
        var scanner = JSONObjectScanner()
        let bytes = Array(line.utf8)
        try bytes.withUnsafeBytes { raw in
            try scanner.scan(raw)
            let m = scanner.members[0]
            #expect(String(decoding: raw[m.valueStart..<m.valueEnd], as: UTF8.self) == value, "\(line)")
            #expect(m.valueEscaped == escaped, "\(line)")
            #expect(scanner.members.count == (line.hasSuffix(",\"z\":1}") || line.hasSuffix("zz\"}") ? 2 : 1))
        }
    }

    /// Every protocol key is found by its name, escaped or not, and near misses are not.
    @Test func keyClassificationMatchesNames() throws {
        for key in ProtocolKey.allCases {
            let name = key.name.description
            #expect(classify(name) == key, "\(name)")
            // The same key with its first letter escaped.
            let first = Array(name.utf8)[0]
            let hex = Array("0123456789abcdef".utf8)
            let escaped = "\\u00" + String(decoding: [hex[Int(first >> 4)], hex[Int(first & 0xF)]], as: UTF8.self) + name.dropFirst()
            #expect(classify(escaped) == key, "\(escaped)")
            // Every one-byte change, a byte more and a byte less.
            var bytes = Array(name.utf8)
            for i in bytes.indices {
                let saved = bytes[i]
                bytes[i] = saved ^ 0x01
                #expect(classify(String(decoding: bytes, as: UTF8.self)) == nil, "\(bytes)")
                bytes[i] = saved
            }
            #expect(classify(name + "x") == nil)
            #expect(classify(String(name.dropLast())) == nil)
            #expect(classify(name.uppercased()) == nil)
        }
        #expect(classify("\\u006bind") == .kind)
        #expect(classify("\\u0065vent_timestamp") == .eventTimestamp)
        #expect(classify("") == nil)
    }

    private func classify(_ key: String) -> ProtocolKey? {
        var scanner = JSONObjectScanner()
        let bytes = Array("{\"\(key)\":1}".utf8)
        return bytes.withUnsafeBytes { raw -> ProtocolKey? in
            guard (try? scanner.scan(raw)) != nil else { return nil }
            let line = ProtocolLine(bytes: raw, members: scanner.members, slots: scanner.keySlots)
            return ProtocolKey.allCases.first { line.member($0) != nil }
        }
    }

    /// `hasBufferedLine` remembers the newline it found; `next()` must hand out the same lines
    /// as without asking, whatever the buffer size and however the bytes arrive.
    @Test func lineReaderAnswersTheSameWhenAskedFirst() throws {
        let text = "one\n\ntwo\r\n" + String(repeating: "x", count: 300) + "\n" + String(repeating: "y\n", count: 50) + "last"
        for bufferSize in [4, 16, 64, 1024] {
            for ask in [false, true] {
                var fds: [Int32] = [0, 0]
                #expect(pipe(&fds) == 0)
                _ = Array(text.utf8).withUnsafeBytes { write(fds[1], $0.baseAddress, $0.count) }
                close(fds[1])
                defer { close(fds[0]) }
                let reader = LineReader(fd: fds[0], bufferSize: bufferSize, maxLineLength: 100)
                var items: [String] = []
                while true {
                    if ask { _ = reader.hasBufferedLine }
                    guard let item = try reader.next() else { break }
                    if ask { _ = reader.hasBufferedLine }
                    switch item {
                    case .line(let raw): items.append(String(decoding: raw, as: UTF8.self))
                    case .overlong(let count):
                        items.append("overlong \(count)")
                        reader.compact(to: 4)
                    }
                }
                // The limit holds whatever the buffer's size (a line found within a grown buffer too).
                let expected = ["one", "", "two\r", "overlong 300"] + Array(repeating: "y", count: 50) + ["last"]
                #expect(items == expected, "buffer \(bufferSize), ask \(ask)")
            }
        }
    }
}
