import Generating
import Testing

@testable import Ingest
@testable import Validating

/// validate's hand-tuned pieces against slow, obvious references.
@Suite struct ValidatorFastPathTests {
    /// The id table answers as `Set<RowKey>` does, for random ids, ids differing in few
    /// bits, the nil UUID, and across many growths of its shards.
    @Test func eventIDTableAgreesWithASet() {
        var rng = SplitMix64(seed: 42)
        var ids: [RowKey] = [RowKey(high: 0, low: 0), RowKey(high: 0, low: 1), RowKey(high: 1, low: 0)]
        for k in 0..<30_000 { ids.append(RowKey(high: 0, low: UInt64(k) << 1)) }  // sequential, even only
        for k in 0..<30_000 { ids.append(RowKey(high: UInt64(k) << 48, low: 7)) }  // only high bits differ
        for _ in 0..<60_000 { ids.append(RowKey(high: rng.next(), low: rng.next())) }
        for expected in [1, 1000, 250_000] {
            let table = RowKeyTable(expectedCount: expected)
            var reference = Set<RowKey>()
            for (index, id) in ids.enumerated() {
                // Ask about ids not yet inserted (and some already), then insert, some twice.
                let probe = ids[(index * 7919) % ids.count]
                #expect(table.contains(probe) == reference.contains(probe))
                #expect(table.insert(id) == reference.insert(id).inserted)
                if index % 3 == 0 { #expect(!table.insert(id)) }
            }
            #expect(table.count == reference.count)
            #expect(ids.allSatisfy { table.contains($0) })
            #expect(!table.contains(RowKey(high: 3, low: 1)))
            #expect(!table.contains(RowKey(high: 0, low: 3)))
        }
    }

    @Test func nilUUIDIsAnIDLikeAnyOther() {
        let zero = recordJSON(["event_id": "\"00000000-0000-0000-0000-000000000000\""])
        let out = runValidator([zero, zero])
        #expect(out[0].hasPrefix(#"{"kind":"record""#))
        #expect(out[1].contains("duplicate event_id"))
    }

    /// The record writer: values normalised in place, the kind first, other members as they
    /// came, repeated keys (only the last counts), a price added when absent.
    @Test func recordWriterKeepsOrderAndRepeatedKeys() {
        let line =
            #"{"z":[1, 2],"event_id":"x","user_id":"007","kind":"record","event_id":"6F1C2A3B-1111-4222-8333-444455556666","product_id":12,"price":5,"event_type":"Purchase","event_timestamp":"2024-01-30T10:15:23Z","kind":"record","q":"\u00e9"}"#
        #expect(
            runValidator([line]) == [
                #"{"kind":"record","z":[1, 2],"event_id":"x","user_id":7,"kind":"record","event_id":"6f1c2a3b-1111-4222-8333-444455556666","product_id":12,"price":"5.00","event_type":"purchase","event_timestamp":"2024-01-30T10:15:23.000Z","q":"\u00e9"}"#
            ])
        let noPrice =
            #"{"event_id":"6f1c2a3b-1111-4222-8333-444455556666","user_id":1,"product_id":1,"event_type":"view","event_timestamp":"0001-01-01T00:00:00Z"}"#
        #expect(
            runValidator([noPrice]) == [
                #"{"kind":"record","event_id":"6f1c2a3b-1111-4222-8333-444455556666","user_id":1,"product_id":1,"event_type":"view","event_timestamp":"0001-01-01T00:00:00.000Z","price":null}"#
            ])
    }

    /// Lines far longer than the writer's first buffer, and a configured type that needs escaping.
    @Test func recordWriterGrowsAndEscapesTypes() {
        let big = String(repeating: "b", count: 20_000)
        let line = recordJSON(["event_type": #""say \"hi\"""#, "price": "<absent>"], prefix: "\"kind\":\"record\",\"big\":\"\(big)\"")
        let rules = ValidationRules(eventTypes: ["purchase", "say \"hi\""])
        let out = runValidator([line], rules: rules)
        #expect(out.count == 1)
        #expect(out[0].contains(#""event_type":"say \"hi\"""#))
        #expect(out[0].contains(big))
        #expect(out[0].hasSuffix(#""event_timestamp":"2024-01-30T10:15:23.123Z","price":null}"#))
    }
}
