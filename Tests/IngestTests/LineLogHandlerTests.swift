import Testing

@testable import Ingest

@Suite struct LineLogHandlerTests {
    /// A file named "x\nERROR - forged.csv" must not make a second log line.
    @Test func controlCharactersAreEscaped() {
        #expect(LineLogHandler.oneLine("Emitted new\nline.csv") == "Emitted new\\nline.csv")
        #expect(LineLogHandler.oneLine("a\r\tb\u{01}\u{7F}") == "a\\r\\tb\\x01\\x7f")
        #expect(LineLogHandler.oneLine("plain é 😀") == "plain é 😀")
    }
}
