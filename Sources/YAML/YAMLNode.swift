import CLibYAML

/// A YAML document as a tree of plain values, each with the line and column it starts at, so a
/// caller can name where a problem is (`orders.yaml:12:7`).
///
/// Over libyaml (Debian libyaml-dev), the parser Yams wraps, rather than Yams itself: Yams
/// links Foundation, which put a probe program's peak RSS at 21.2 MB against 8.8 MB without it
/// (one small document parsed, 100,000 stdin lines read), and every stage loads a contract
/// under a 25 MB budget.
public indirect enum YAMLValue: Sendable, Equatable {
    /// A scalar's text; `plain` is false when it was quoted or a block scalar (so `"1"`, `'no'`
    /// and `|` text stay strings for a caller that types plain scalars).
    case scalar(String, plain: Bool)
    case sequence([YAMLNode])
    /// Pairs in document order (a contract lists columns in order; duplicates are the caller's).
    case mapping([(key: YAMLNode, value: YAMLNode)])

    public static func == (a: YAMLValue, b: YAMLValue) -> Bool {
        switch (a, b) {
        case (.scalar(let x, let px), .scalar(let y, let py)): x == y && px == py
        case (.sequence(let x), .sequence(let y)): x == y
        case (.mapping(let x), .mapping(let y)): x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: false
        }
    }
}

/// A value and where it starts (1-based line and column).
public struct YAMLNode: Sendable, Equatable {
    public var value: YAMLValue
    public var line: Int
    public var column: Int

    public init(_ value: YAMLValue, line: Int, column: Int) {
        self.value = value
        self.line = line
        self.column = column
    }

    /// The scalar's text, or nil for a sequence or mapping.
    public var scalar: String? {
        if case .scalar(let text, _) = value { return text }
        return nil
    }

    /// The member named `key` of a mapping (the last, if repeated), or nil.
    public subscript(key: String) -> YAMLNode? {
        guard case .mapping(let pairs) = value else { return nil }
        return pairs.last(where: { $0.key.scalar == key })?.value
    }
}

/// Why a text is not a YAML document, with where libyaml stopped.
public struct YAMLSyntaxError: Error, CustomStringConvertible, Sendable {
    public var line: Int
    public var column: Int
    public var problem: String
    public var description: String { "\(line):\(column): \(problem)" }
}

public enum YAMLDocument {
    /// Parses the first document of `text`; nil for an empty stream.
    public static func parse(_ text: String) throws(YAMLSyntaxError) -> YAMLNode? {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw YAMLSyntaxError(line: 0, column: 0, problem: "out of memory")
        }
        defer { yaml_parser_delete(&parser) }
        var bytes = Array(text.utf8)
        return try bytes.withUnsafeMutableBufferPointer { buffer throws(YAMLSyntaxError) -> YAMLNode? in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var document = yaml_document_t()
            guard yaml_parser_load(&parser, &document) == 1 else {
                let problem = parser.problem.map { String(cString: $0) } ?? "not YAML"
                let context = parser.context.map { String(cString: $0) + ": " } ?? ""
                throw YAMLSyntaxError(
                    line: Int(parser.problem_mark.line) + 1, column: Int(parser.problem_mark.column) + 1,
                    problem: context + problem)
            }
            defer { yaml_document_delete(&document) }
            guard let root = yaml_document_get_root_node(&document) else { return nil }
            var depth = 0
            return try node(root, in: &document, depth: &depth)
        }
    }

    /// Nesting limit: aliases can make a small text a deep (or cyclic) tree.
    static let maxDepth = 64

    private static func node(
        _ n: UnsafeMutablePointer<yaml_node_t>, in document: inout yaml_document_t, depth: inout Int
    ) throws(YAMLSyntaxError) -> YAMLNode {
        let line = Int(n.pointee.start_mark.line) + 1
        let column = Int(n.pointee.start_mark.column) + 1
        depth += 1
        defer { depth -= 1 }
        guard depth <= maxDepth else {
            throw YAMLSyntaxError(line: line, column: column, problem: "nested more than \(maxDepth) levels")
        }
        switch n.pointee.type {
        case YAML_SCALAR_NODE:
            let s = n.pointee.data.scalar
            let text = String(decoding: UnsafeBufferPointer(start: s.value, count: s.length), as: UTF8.self)
            return YAMLNode(.scalar(text, plain: s.style == YAML_PLAIN_SCALAR_STYLE), line: line, column: column)
        case YAML_SEQUENCE_NODE:
            var items: [YAMLNode] = []
            var p = n.pointee.data.sequence.items.start
            while let q = p, q < n.pointee.data.sequence.items.top {
                if let child = yaml_document_get_node(&document, q.pointee) {
                    items.append(try node(child, in: &document, depth: &depth))
                }
                p = q + 1
            }
            return YAMLNode(.sequence(items), line: line, column: column)
        case YAML_MAPPING_NODE:
            var pairs: [(key: YAMLNode, value: YAMLNode)] = []
            var p = n.pointee.data.mapping.pairs.start
            while let q = p, q < n.pointee.data.mapping.pairs.top {
                if let k = yaml_document_get_node(&document, q.pointee.key),
                    let v = yaml_document_get_node(&document, q.pointee.value)
                {
                    pairs.append((try node(k, in: &document, depth: &depth), try node(v, in: &document, depth: &depth)))
                }
                p = q + 1
            }
            return YAMLNode(.mapping(pairs), line: line, column: column)
        default:
            return YAMLNode(.scalar("", plain: true), line: line, column: column)
        }
    }
}
