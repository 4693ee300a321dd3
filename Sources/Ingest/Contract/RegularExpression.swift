#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A contract's `pattern`: a POSIX extended regular expression (glibc's `regcomp`/`regexec`),
/// matched against the whole value.
///
/// POSIX ERE rather than Swift's `Regex`: without backreferences (refused here) glibc matches
/// in time polynomial in the value's length, where a backtracking engine can take exponential
/// time on a hostile value (`(a+)+$`); values are at most a CSV field's length.
public final class RegularExpression: @unchecked Sendable {
    // Owned by this object; `regexec` only reads it, so concurrent matches are safe.
    private var compiled = regex_t()
    private var scratch: [CChar] = []
    public let pattern: String

    /// Why `pattern` cannot be used; nil when it can.
    public static func problem(_ pattern: String) -> String? {
        if pattern.utf8.contains(0) { return "contains a NUL byte" }
        var previous: UInt8 = 0
        for b in pattern.utf8 {
            if previous == UInt8(ascii: "\\") && b >= UInt8(ascii: "1") && b <= UInt8(ascii: "9") {
                return "backreferences (\\1…\\9) are not supported"
            }
            previous = previous == UInt8(ascii: "\\") ? 0 : b
        }
        var r = regex_t()
        let status = regcomp(&r, "^(" + pattern + ")$", REG_EXTENDED | REG_NOSUB)
        defer { if status == 0 { regfree(&r) } }
        guard status == 0 else {
            var message = [CChar](repeating: 0, count: 256)
            let count = message.count
            message.withUnsafeMutableBufferPointer { _ = regerror(status, &r, $0.baseAddress, count) }
            return "not a POSIX extended regular expression: "
                + String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return nil
    }

    /// Compiles `pattern`, anchored at both ends; nil when `problem(pattern)` is not nil.
    public init?(_ pattern: String) {
        guard Self.problem(pattern) == nil else { return nil }
        self.pattern = pattern
        guard regcomp(&compiled, "^(" + pattern + ")$", REG_EXTENDED | REG_NOSUB) == 0 else { return nil }
    }

    deinit { regfree(&compiled) }

    /// True when the whole of `bytes` (UTF-8, no NUL) matches. Not thread-safe: each
    /// validator owns its own.
    public func matches(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if scratch.count < bytes.count + 1 { scratch = [CChar](repeating: 0, count: bytes.count * 2 + 64) }
        return scratch.withUnsafeMutableBufferPointer { s in
            if let base = bytes.baseAddress { UnsafeMutableRawPointer(s.baseAddress!).copyMemory(from: base, byteCount: bytes.count) }
            s[bytes.count] = 0
            return regexec(&compiled, s.baseAddress!, 0, nil, 0) == 0
        }
    }
}
