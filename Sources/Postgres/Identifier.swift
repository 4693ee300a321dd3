/// Quotes a table or column name for SQL: `events` → `"events"`, `we"ird` → `"we""ird"`.
///
/// A dot outside double quotes separates schema from name, as the user would write it in SQL:
/// `--table public.events` → `"public"."events"`. Only the first such dot splits (a name has at
/// most a schema), so `a.b.c` → `"a"."b.c"`. A part the user already quoted is kept as that one
/// name: `"my.schema".events` → `"my.schema"."events"`.
public func quoteIdentifier(_ name: String) -> String {
    var insideQuotes = false
    var split: String.Index?
    for index in name.indices {
        switch name[index] {
        case "\"": insideQuotes.toggle()
        case "." where !insideQuotes:
            split = index
        default: break
        }
        if split != nil { break }
    }
    guard let split else { return quotePart(name) }
    return quotePart(String(name[..<split])) + "." + quotePart(String(name[name.index(after: split)...]))
}

private func quotePart(_ part: String) -> String {
    var raw = part
    // Already quoted by the user: take what is between the quotes as the name.
    if part.count >= 2, part.first == "\"", part.last == "\"" {
        let inner = part.dropFirst().dropLast()
        // Only if every inner quote is doubled; otherwise the quotes are part of the name.
        if inner.replacingDoubledQuotes() != nil { raw = inner.replacingDoubledQuotes()! }
    }
    var quoted = "\""
    for character in raw {
        if character == "\"" { quoted += "\"\"" } else { quoted.append(character) }
    }
    return quoted + "\""
}

extension Substring {
    /// `a""b` → `a"b`; nil when a quote stands alone.
    fileprivate func replacingDoubledQuotes() -> String? {
        var result = ""
        var iterator = makeIterator()
        while let character = iterator.next() {
            if character == "\"" {
                guard iterator.next() == "\"" else { return nil }
            }
            result.append(character)
        }
        return result
    }
}
