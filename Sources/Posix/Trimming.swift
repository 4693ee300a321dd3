extension StringProtocol {
    /// The text without the leading and trailing characters `isTrimmed` accepts.
    public func trimming(where isTrimmed: (Character) -> Bool) -> String {
        guard let first = firstIndex(where: { !isTrimmed($0) }), let last = lastIndex(where: { !isTrimmed($0) }) else { return "" }
        return String(self[first...last])
    }

    /// The text without leading and trailing characters of `set`.
    public func trimming(_ set: String) -> String { trimming(where: set.contains) }

    /// The text without leading and trailing spaces and tabs: how a CSV header or a contract's
    /// value is read.
    public func trimmingBlanks() -> String { trimming(where: { $0 == " " || $0 == "\t" }) }

    /// The text without leading and trailing white space, newlines included.
    public func trimmingWhitespace() -> String { trimming(where: { $0.isWhitespace || $0.isNewline }) }
}
