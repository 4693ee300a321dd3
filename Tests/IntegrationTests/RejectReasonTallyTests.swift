import Ingest
import Testing

@testable import Loading

/// The reasons `load` counts for `ingest_rows_rejected_total{reason}`, read from reject lines.
@Suite struct RejectReasonTallyTests {
    static func tally(_ lines: [String]) throws -> [String: Int] {
        var tally = RejectReasonTally()
        var decoder = LineDecoder()
        for text in lines {
            var bytes = Array(text.utf8)
            try bytes.withUnsafeMutableBytes { raw in tally.add(try decoder.decode(UnsafeRawBufferPointer(raw))) }
        }
        return tally.counts
    }

    @Test func everyReasonOfEveryLineIsCounted() throws {
        let counts = try Self.tally([
            #"{"kind":"reject","line":2,"reasons":[{"field":"price","reason":"must be > 0","value":"-1"},{"field":"user_id","reason":"required"}]}"#,
            #"{"kind":"reject","line":3,"reasons":[{"field":"price","reason":"must be > 0","value":"{\"x\":[1]}"}]}"#,
            #"{"kind":"reject","line":4,"reasons":[{"field":null,"reason":"expected 7 fields, found \"3\""}]}"#,
        ])
        #expect(counts == ["must be > 0": 2, "required": 1, #"expected 7 fields, found "3""#: 1])
    }

    @Test func aLineWithoutReasonsCountsAsUnknown() throws {
        let counts = try Self.tally([
            #"{"kind":"reject","line":2}"#,
            #"{"kind":"reject","line":3,"reasons":"not an array"}"#,
            #"{"kind":"reject","line":4,"reasons":[{"field":"price"}]}"#,
            #"{"kind":"reject","line":5,"reasons":[]}"#,
        ])
        #expect(counts == ["unknown": 4])
    }
}
