import Testing

@testable import Telemetry

@Suite struct RejectReasonLabelTests {
    @Test(arguments: [
        ("must be > 0", "must be > N"),
        ("not an integer", "not an integer"),
        ("expected 6 fields, found 3", "expected N fields, found N"),
        ("database refused the row: 22P02: invalid input syntax", "database refused the row"),
        ("malformed JSON: expected a key string at byte 2", "malformed JSON"),
        ("line longer than 67108864 bytes", "line longer than N bytes"),
        ("", "unknown"),
    ])
    func normalises(reason: String, label: String) {
        #expect(RejectReasonLabel.normalise(reason) == label)
    }

    @Test func cardinalityIsBounded() {
        var catalogue = RejectReasonLabel.Catalogue()
        for i in 0..<(RejectReasonLabel.limit + 20) {
            let letters = String([Character(UnicodeScalar(97 + i % 26)!), Character(UnicodeScalar(97 + i / 26)!)])
            _ = catalogue.label(for: "reason \(letters)")
        }
        #expect(catalogue.known.count == RejectReasonLabel.limit)
        #expect(catalogue.label(for: "a reason never seen") == RejectReasonLabel.other)
        #expect(catalogue.label(for: "reason aa") == "reason aa")
    }
}
