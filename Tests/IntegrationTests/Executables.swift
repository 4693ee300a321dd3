import Foundation

/// Where `swift build` put the executables: next to the test bundle.
enum Executables {
    static var directory: URL {
        #if os(macOS)
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            return bundle.bundleURL.deletingLastPathComponent()
        }
        #endif
        return Bundle.main.bundleURL
    }

    /// The built executable `name` (`gen`, `watch`, `validate`, `load`), never one found via PATH.
    static func url(_ name: String) -> URL {
        directory.appendingPathComponent(name)
    }
}
