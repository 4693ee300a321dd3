// swift-tools-version:6.0
import PackageDescription

// Release builds drop Swift's dynamic exclusivity checks: in the row loops (class-held buffers
// touched per byte) they cost ~38% of `watch`'s instructions (callgrind, 10,000-row file).
// Debug builds, which the tests use, keep them.
let hotPath: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "ecommerce-ingest",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "gen", targets: ["gen"]),
        .executable(name: "watch", targets: ["watch"]),
        .executable(name: "validate", targets: ["validate"]),
        .executable(name: "load", targets: ["load"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // The domain: the event, CSV reading, the line protocol, validation rules.
        .target(
            name: "Ingest",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: hotPath
        ),
        // libpq, the PostgreSQL C client library (Debian libpq-dev, Homebrew libpq).
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"]), .brew(["libpq"])]
        ),
        // libpq in Swift (queries with parameters, COPY, errors) and the loader built on it.
        .target(
            name: "Postgres",
            dependencies: [
                "CLibPQ", "Ingest",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: hotPath
        ),
        .executableTarget(
            name: "gen",
            dependencies: [
                "Ingest",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: hotPath
        ),
        .executableTarget(
            name: "watch",
            dependencies: [
                "Ingest",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: hotPath
        ),
        .executableTarget(
            name: "validate",
            dependencies: [
                "Ingest",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: hotPath
        ),
        .executableTarget(
            name: "load",
            dependencies: [
                "Ingest", "Postgres",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "IngestTests", dependencies: ["Ingest"]),
        // Shared by the test targets: a fresh database per test on the server named by PG* variables.
        .target(name: "TestSupport", dependencies: ["Postgres"], path: "Tests/TestSupport"),
        .testTarget(name: "PostgresTests", dependencies: ["Postgres", "Ingest", "TestSupport"]),
        // Runs the built executables as real processes joined by real pipes.
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["Ingest", "Postgres", "TestSupport", "gen", "watch", "validate", "load"]
        ),
    ]
)
