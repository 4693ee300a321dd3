import ArgumentParser
import Ingest

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `--contract FILE`, which every stage takes: the table's contract (docs/contracts.md).
/// Without it, `$INGEST_CONTRACT`; without that, the built-in e-commerce contract.
public struct ContractOption: ParsableArguments {
    @Option(
        name: .customLong("contract"),
        help: ArgumentHelp(
            "The table's contract, a YAML file (docs/contracts.md); default: $INGEST_CONTRACT, else contracts/ecommerce_events.yaml (built in).",
            valueName: "file"))
    public var path: String?

    public init() {}

    /// The contract, or exit 64 with one line naming the file, its line and the problem.
    public func contract(tool: String = ProcessInfoLite.toolName) throws -> Contract {
        do {
            return try Contract.resolve(path: path, environment: environmentVariables())
        } catch {
            writeWhole(2, "\(tool): Error: bad contract: \(error.description)\n")
            throw ExitCode(ExitStatus.usage.rawValue)
        }
    }
}

/// The process's own name, for messages raised outside a command's type.
public enum ProcessInfoLite {
    public static var toolName: String {
        guard let first = CommandLine.arguments.first else { return "tool" }
        return String(first.split(separator: "/").last ?? Substring(first))
    }
}

/// The environment as a dictionary (no Foundation).
public func environmentVariables() -> [String: String] {
    var result: [String: String] = [:]
    var p = environ
    while let entry = p.pointee {
        let text = String(cString: entry)
        if let eq = text.firstIndex(of: "=") {
            result[String(text[..<eq])] = String(text[text.index(after: eq)...])
        }
        p += 1
    }
    return result
}
