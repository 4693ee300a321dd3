/// Draws text matching a contract column's `pattern`, for the small part of POSIX ERE that
/// identifiers and codes are written in: literals, `\x` escapes, `.`, bracket lists with ranges
/// and `[:digit:]`-style classes (not negated), groups with `|`, and the quantifiers `?` `*`
/// `+` `{n}` `{n,}` `{n,m}`.
///
/// Anything else (negated lists, anchors inside, backreferences) is refused when the contract
/// is read by `gen`, which then says so: a general ERE sampler would be a project of its own,
/// and a generator that writes values a pattern refuses is worse than one that declines.
/// Every drawn value is still checked by the validator (`ContractRowGenerator`).
struct PatternSampler {
    indirect enum Node {
        case literal(Character)
        case set([Character])
        case sequence([Node])
        case choice([Node])
        case repeated(Node, min: Int, max: Int)
    }

    struct Unsupported: Error { var problem: String }

    let root: Node

    /// Open-ended quantifiers (`*`, `+`, `{n,}`) draw at most this many more.
    static let openRepeat = 6

    init(_ pattern: String) throws(Unsupported) {
        var chars = Array(pattern)
        if chars.first == "^" { chars.removeFirst() }
        if chars.last == "$" && !(chars.count >= 2 && chars[chars.count - 2] == "\\") { chars.removeLast() }
        var i = 0
        root = try Self.alternatives(chars, &i)
        guard i == chars.count else { throw Unsupported(problem: "unbalanced \")\"") }
    }

    func draw(_ random: inout SplitMix64) -> String {
        var out = ""
        Self.draw(root, &random, &out)
        return out
    }

    private static func draw(_ node: Node, _ random: inout SplitMix64, _ out: inout String) {
        switch node {
        case .literal(let c): out.append(c)
        case .set(let options): out.append(random.pick(options))
        case .sequence(let items): for item in items { draw(item, &random, &out) }
        case .choice(let options): draw(random.pick(options), &random, &out)
        case .repeated(let item, let lo, let hi):
            for _ in 0..<random.int(in: lo...hi) { draw(item, &random, &out) }
        }
    }

    private static func alternatives(_ c: [Character], _ i: inout Int) throws(Unsupported) -> Node {
        var options = [try sequence(c, &i)]
        while i < c.count && c[i] == "|" {
            i += 1
            options.append(try sequence(c, &i))
        }
        return options.count == 1 ? options[0] : .choice(options)
    }

    private static func sequence(_ c: [Character], _ i: inout Int) throws(Unsupported) -> Node {
        var items: [Node] = []
        while i < c.count && c[i] != "|" && c[i] != ")" {
            var atom: Node
            switch c[i] {
            case "(":
                i += 1
                atom = try alternatives(c, &i)
                guard i < c.count && c[i] == ")" else { throw Unsupported(problem: "unbalanced \"(\"") }
                i += 1
            case "[":
                atom = .set(try bracket(c, &i))
            case ".":
                atom = .set(Array("abcdefghijklmnopqrstuvwxyz0123456789"))
                i += 1
            case "\\":
                guard i + 1 < c.count else { throw Unsupported(problem: "ends with a lone \\") }
                atom = .literal(c[i + 1])
                i += 2
            case "^", "$", "*", "+", "?", "{":
                throw Unsupported(problem: "\(c[i]) in the middle of the pattern")
            default:
                atom = .literal(c[i])
                i += 1
            }
            if i < c.count {
                switch c[i] {
                case "?": atom = .repeated(atom, min: 0, max: 1); i += 1
                case "*": atom = .repeated(atom, min: 0, max: openRepeat); i += 1
                case "+": atom = .repeated(atom, min: 1, max: openRepeat); i += 1
                case "{": atom = try counted(atom, c, &i)
                default: break
                }
            }
            items.append(atom)
        }
        return items.count == 1 ? items[0] : .sequence(items)
    }

    private static func counted(_ atom: Node, _ c: [Character], _ i: inout Int) throws(Unsupported) -> Node {
        guard let close = c[i...].firstIndex(of: "}") else { throw Unsupported(problem: "unclosed {") }
        let inner = String(c[(i + 1)..<close])
        i = close + 1
        let parts = inner.split(separator: ",", omittingEmptySubsequences: false).map { Int($0) }
        switch parts.count {
        case 1:
            guard let n = parts[0] else { throw Unsupported(problem: "bad count {\(inner)}") }
            return .repeated(atom, min: n, max: n)
        case 2:
            guard let lo = parts[0] else { throw Unsupported(problem: "bad count {\(inner)}") }
            let hi = parts[1] ?? lo + openRepeat
            guard hi >= lo else { throw Unsupported(problem: "bad count {\(inner)}") }
            return .repeated(atom, min: lo, max: hi)
        default: throw Unsupported(problem: "bad count {\(inner)}")
        }
    }

    static let classes: [String: String] = [
        "digit": "0123456789", "alpha": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "upper": "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "lower": "abcdefghijklmnopqrstuvwxyz",
        "alnum": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", "xdigit": "0123456789abcdef",
    ]

    private static func bracket(_ c: [Character], _ i: inout Int) throws(Unsupported) -> [Character] {
        i += 1
        guard i < c.count, c[i] != "^" else { throw Unsupported(problem: "negated bracket lists ([^…])") }
        var members: [Character] = []
        var first = true
        while i < c.count && (c[i] != "]" || first) {
            first = false
            if c[i] == "[" && i + 1 < c.count && c[i + 1] == ":" {
                guard let end = c[(i + 2)...].firstIndex(of: ":"), end + 1 < c.count, c[end + 1] == "]",
                    let set = classes[String(c[(i + 2)..<end])]
                else {
                    throw Unsupported(problem: "a character class other than [:digit:] [:alpha:] [:upper:] [:lower:] [:alnum:] [:xdigit:]")
                }
                members.append(contentsOf: set)
                i = end + 2
            } else if i + 2 < c.count && c[i + 1] == "-" && c[i + 2] != "]" {
                guard let lo = c[i].unicodeScalars.first?.value, let hi = c[i + 2].unicodeScalars.first?.value, lo <= hi, hi - lo < 4096
                else {
                    throw Unsupported(problem: "bad range \(c[i])-\(c[i + 2])")
                }
                for v in lo...hi { if let s = Unicode.Scalar(v) { members.append(Character(s)) } }
                i += 3
            } else {
                members.append(c[i])
                i += 1
            }
        }
        guard i < c.count, !members.isEmpty else { throw Unsupported(problem: "unclosed [") }
        i += 1
        return members
    }
}
