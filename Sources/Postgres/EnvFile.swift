/// `.env` files as the tools and bin/ scripts read them: data, never executed.
///
/// bin/lib/common.sh's `env_file_entries` follows the same rules, line by line:
/// - lines end at `\n`, a `\r` before it is dropped; spaces and tabs around a line are ignored;
/// - empty lines and lines starting with `#` are skipped; an `export ` prefix is allowed;
/// - `KEY=VALUE`: KEY (spaces before `=` ignored) is `[A-Za-z_][A-Za-z0-9_]*`, else the line is
///   skipped; spaces after `=` are ignored;
/// - a value starting with `'` or `"` that has a closing quote is what lies between them,
///   verbatim (no escapes; anything after the closing quote is ignored);
/// - any other value ends before ` #` or tab `#` (a comment) and trailing spaces;
/// - a key given twice takes the later value.
///
/// The tools that connect read it strictly (``firstProblem(_:)``, `env_file_check` in bash): a
/// line these rules would skip is refused, naming its line, rather than silently ignored.
public enum EnvFile {
    /// The first line (1-based) that the rules above would skip or read other than it looks:
    /// not `KEY=VALUE`, a key that is not a name, a value whose opening quote is not closed.
    /// Values are never part of the message (the line may hold a password).
    public static func firstProblem(_ text: String) -> (line: Int, message: String)? {
        var number = 0
        for rawLine in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            number += 1
            var bytes = Array(rawLine)
            if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
            var line = trimmed(bytes[...])
            guard let first = line.first, first != UInt8(ascii: "#") else { continue }
            let export = Array("export".utf8)
            if line.starts(with: export), line.count > export.count, isBlank(line[line.startIndex + export.count]) {
                line = trimmed(line.dropFirst(export.count))
            }
            guard let equals = line.firstIndex(of: UInt8(ascii: "=")) else {
                return (number, "not a KEY=VALUE line")
            }
            let key = trimmed(line[..<equals])
            guard let head = key.first, isKeyStart(head), key.allSatisfy({ isKeyStart($0) || (0x30...0x39).contains($0) }) else {
                return (number, "not a KEY=VALUE line (a key is letters, digits and _, not starting with a digit)")
            }
            let value = trimmed(line[(equals + 1)...])
            if let quote = value.first, quote == UInt8(ascii: "'") || quote == UInt8(ascii: "\""),
                !value.dropFirst().contains(quote)
            {
                return (
                    number,
                    "\(String(decoding: key, as: UTF8.self)): the value's opening \(quote == UInt8(ascii: "'") ? "'" : "\"") is not closed"
                )
            }
        }
        return nil
    }

    public static func parse(_ text: String) -> [String: String] {
        var values: [String: String] = [:]
        for rawLine in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            var bytes = Array(rawLine)
            if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
            guard let entry = entry(trimmed(bytes[...])) else { continue }
            values[entry.key] = entry.value
        }
        return values
    }

    private static func isBlank(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 }

    private static func trimmed(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var slice = bytes
        while let first = slice.first, isBlank(first) { slice.removeFirst() }
        while let last = slice.last, isBlank(last) { slice.removeLast() }
        return slice
    }

    private static func entry(_ line: ArraySlice<UInt8>) -> (key: String, value: String)? {
        var line = line
        guard let first = line.first, first != UInt8(ascii: "#") else { return nil }
        let export = Array("export".utf8)
        if line.starts(with: export), line.count > export.count, isBlank(line[line.startIndex + export.count]) {
            line = trimmed(line.dropFirst(export.count))
        }
        guard let equals = line.firstIndex(of: UInt8(ascii: "=")) else { return nil }
        let key = trimmed(line[..<equals])
        guard let head = key.first, isKeyStart(head), key.allSatisfy({ isKeyStart($0) || (0x30...0x39).contains($0) })
        else { return nil }
        var value = trimmed(line[(equals + 1)...])
        if let quote = value.first, quote == UInt8(ascii: "'") || quote == UInt8(ascii: "\""),
            let close = value.dropFirst().firstIndex(of: quote)
        {
            value = value[(value.startIndex + 1)..<close]
        } else {
            var index = value.startIndex
            while index < value.endIndex {
                if isBlank(value[index]), index + 1 < value.endIndex, value[index + 1] == UInt8(ascii: "#") {
                    value = trimmed(value[..<index])
                    break
                }
                index += 1
            }
        }
        return (String(decoding: key, as: UTF8.self), String(decoding: value, as: UTF8.self))
    }

    private static func isKeyStart(_ byte: UInt8) -> Bool {
        (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || byte == UInt8(ascii: "_")
    }
}
