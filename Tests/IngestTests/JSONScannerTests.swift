import Foundation
import Generating
import Testing

@testable import Ingest

/// Scans `text` and returns (key, raw value) pairs, or the syntax error.
private func scan(_ text: String) -> Result<[(String, String)], JSONSyntaxError> {
    var scanner = JSONObjectScanner()
    let bytes = Array(text.utf8)
    return bytes.withUnsafeBytes { raw in
        do {
            try scanner.scan(raw)
        } catch {
            return .failure(error as! JSONSyntaxError)
        }
        let line = ProtocolLine(bytes: raw, members: scanner.members)
        return .success(
            scanner.members.map {
                (String(decoding: line.keySpan($0), as: UTF8.self), String(decoding: line.span($0), as: UTF8.self))
            })
    }
}

@Suite struct JSONScannerTests {
    @Test func flatRecordMembersAreRawSpans() throws {
        let result = try scan(#"{"kind":"record","line":2,"price":null,"ok":true,"n":-1.5e3,"a":[1,{"b":"c"}],"o":{}}"#).get()
        #expect(result.map(\.0) == ["kind", "line", "price", "ok", "n", "a", "o"])
        #expect(result.map(\.1) == [#""record""#, "2", "null", "true", "-1.5e3", #"[1,{"b":"c"}]"#, "{}"])
    }

    @Test func whitespaceAroundTokensIsAllowed() throws {
        let result = try scan(" { \"a\" : 1 ,\t\"b\":[ ] }\r").get()
        #expect(result.map(\.0) == ["a", "b"])
        #expect(result.map(\.1) == ["1", "[ ]"])
    }

    @Test(arguments: [
        "", "   ", "[]", "\"x\"", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{\"a\":1 \"b\":2}",
        "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":-}", "{\"a\":1e}", "{\"a\":tru}", "{\"a\":nul}",
        "{\"a\":\"x}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12g4\"}", "{\"a\":\"tab\there\"}", "{\"a\":1}}",
        "{\"a\":[1,2}", "{\"a\":{\"b\"}}", "{a:1}", "{'a':1}", "{\"a\":NaN}", "{\"a\":+1}",
    ])
    func rejectsInvalidJSON(_ text: String) {
        if case .success = scan(text) {
            Issue.record("accepted invalid JSON: \(text)")
        }
    }

    @Test func rejectsInvalidUTF8InsideStrings() {
        for bad: [UInt8] in [[0xC3], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xE2, 0x82]] {
            var bytes = Array(#"{"a":""#.utf8)
            bytes += bad
            bytes += Array(#""}"#.utf8)
            var scanner = JSONObjectScanner()
            let failed = bytes.withUnsafeBytes { raw in (try? scanner.scan(raw)) == nil }
            #expect(failed, "accepted \(bad)")
        }
    }

    @Test func acceptsMultibyteUTF8AndEscapes() throws {
        let result = try scan(#"{"name":"Zoë 日本 😀","e":"a\"b\\c\/d\n\u00e9\ud83d\ude00"}"#).get()
        #expect(result.count == 2)
    }

    @Test func errorNamesTheByteOffset() {
        guard case .failure(let error) = scan(#"{"a":1,"b":}"#) else {
            Issue.record("should fail")
            return
        }
        #expect(error.offset == 11)
        #expect(error.description.contains("byte 12"))
    }

    @Test func nestingIsBounded() {
        let deep = "{\"a\":" + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + "}"
        guard case .failure(let error) = scan(deep) else {
            Issue.record("should fail")
            return
        }
        #expect(error.problem.contains("nesting"))
    }

    @Test func unescapeHandlesSurrogatesAndLoneSurrogates() {
        func unescape(_ s: String) -> String {
            var out: [UInt8] = []
            Array(s.utf8).withUnsafeBytes { unescapeJSONString($0, into: &out) }
            return String(decoding: out, as: UTF8.self)
        }
        #expect(unescape(#"a\nb\t\"q\"\\\/"#) == "a\nb\t\"q\"\\/")
        #expect(unescape(#"\u00e9\ud83d\ude00"#) == "é😀")
        #expect(unescape(#"x\ud83dy"#) == "x\u{FFFD}y")
        #expect(unescape(#"\ude00"#) == "\u{FFFD}")
    }

    /// The scanner and Foundation's parser agree on which random lines are JSON objects.
    @Test func agreesWithJSONSerializationOnRandomInput() throws {
        var rng = SplitMix(seed: 42)
        let alphabet = Array(#"{}[]",:0123456789-+.eEtruefalsn \"\\/ux"#.utf8) + [0xC3, 0xA9, 0x0A, 0x09]
        var checked = 0
        for _ in 0..<20_000 {
            var bytes: [UInt8]
            if rng.next() % 2 == 0 {
                // Mutate a valid object.
                bytes = Array(#"{"a":[1,2.5e-3,{"b":"c\u00e9"}],"d":null,"e":"x"}"#.utf8)
                for _ in 0..<Int(rng.next() % 3 + 1) {
                    let position = Int(rng.next() % UInt64(bytes.count))
                    bytes[position] = alphabet[Int(rng.next() % UInt64(alphabet.count))]
                }
            } else {
                bytes = [UInt8(ascii: "{")]
                for _ in 0..<Int(rng.next() % 12) { bytes.append(alphabet[Int(rng.next() % UInt64(alphabet.count))]) }
                bytes.append(UInt8(ascii: "}"))
            }
            var scanner = JSONObjectScanner()
            let ours = bytes.withUnsafeBytes { (try? scanner.scan($0)) != nil }
            let theirs = (try? JSONSerialization.jsonObject(with: Data(bytes))) is [String: Any]
            #expect(ours == theirs, "disagree on \(String(decoding: bytes, as: UTF8.self))")
            checked += 1
        }
        #expect(checked == 20_000)
    }
}

/// The generator `gen` uses, deterministic for a seed.
typealias SplitMix = SplitMix64
