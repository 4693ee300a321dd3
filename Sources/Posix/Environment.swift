#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// From `environ`, not Foundation's ProcessInfo: the first use of ProcessInfo faults in pages
// of FoundationEssentials that nothing else in load or consume touches.

/// The process environment, as ProcessInfo would give it (the first of duplicate names wins).
public func processEnvironment() -> [String: String] {
    var result: [String: String] = [:]
    let first: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = environ  // optional on Darwin only
    guard var entry = first else { return result }
    while let pointer = entry.pointee {
        let text = String(cString: pointer)
        if let equals = text.firstIndex(of: "=") {
            let name = String(text[..<equals])
            if result[name] == nil { result[name] = String(text[text.index(after: equals)...]) }
        }
        entry += 1
    }
    return result
}
