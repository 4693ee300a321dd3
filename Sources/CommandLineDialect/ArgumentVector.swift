#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's own argument vector, as `ps` and /proc/PID/cmdline show it.
public enum ArgumentVector {
    /// Overwrites `secret` with `x` in place wherever it appears in the value of `option`
    /// (`--db VALUE` or `--db=VALUE`), as `mysql -p` does, so other local users cannot read it
    /// in `ps` for the rest of the run. Parse a copy (`CommandLine.arguments`, taken first).
    /// Returns how many occurrences were hidden.
    ///
    /// The moment between exec and this call remains: PGPASSWORD, ~/.pgpass or a `.env` file
    /// keep a password out of argv altogether.
    @discardableResult
    public static func hide(_ secret: String, inValueOf option: String) -> Int {
        let needle = Array(secret.utf8)
        guard !needle.isEmpty else { return 0 }
        let argv = CommandLine.unsafeArgv
        var hidden = 0
        for index in 1..<Int(CommandLine.argc) {
            guard let argument = argv[index] else { continue }
            let current = String(cString: argument)
            let previous = argv[index - 1].map { String(cString: $0) }
            guard previous == option || current.hasPrefix(option + "=") else { continue }
            let length = strlen(argument)
            argument.withMemoryRebound(to: UInt8.self, capacity: length) { bytes in
                var start = 0
                while start + needle.count <= length {
                    if (0..<needle.count).allSatisfy({ bytes[start + $0] == needle[$0] }) {
                        for offset in 0..<needle.count { bytes[start + offset] = UInt8(ascii: "x") }
                        hidden += 1
                        start += needle.count
                    } else {
                        start += 1
                    }
                }
            }
        }
        return hidden
    }
}
