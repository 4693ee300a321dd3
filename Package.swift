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
        .executable(name: "consume", targets: ["consume"]),
        .executable(name: "kafka-mock", targets: ["kafka-mock"]),
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
        // librdkafka, the Kafka C client (Debian librdkafka-dev, Homebrew librdkafka).
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"]), .brew(["librdkafka"])]
        ),
        // librdkafka in Swift: a group consumer with caller-chosen start offsets, watermarks,
        // the mock cluster. Knows nothing of events.
        .target(
            name: "Kafka",
            dependencies: ["CRdKafka", .product(name: "Logging", package: "swift-log")]
        ),
        // The Kafka source stage: messages to protocol lines, start offsets from PostgreSQL, lag.
        .target(
            name: "Consuming",
            dependencies: ["Kafka", "Ingest", "Postgres", .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "consume",
            dependencies: [
                "Consuming", "Kafka", "Ingest", "Postgres",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // A Kafka cluster for tests (librdkafka's mock): prints its address, runs until stdin closes.
        .executableTarget(name: "kafka-mock", dependencies: ["Kafka"]),
        .testTarget(name: "IngestTests", dependencies: ["Ingest"]),
        // Shared by the test targets: a fresh database per test on the server named by PG* variables.
        .target(name: "TestSupport", dependencies: ["Postgres"], path: "Tests/TestSupport"),
        .testTarget(name: "PostgresTests", dependencies: ["Postgres", "Ingest", "TestSupport"]),
        // Runs the built executables as real processes joined by real pipes.
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["Ingest", "Postgres", "TestSupport", "gen", "watch", "validate", "load"]
        ),
        // consume | validate | load against librdkafka's mock cluster, as real processes.
        .testTarget(
            name: "KafkaTests",
            dependencies: ["Ingest", "Postgres", "TestSupport", "gen", "validate", "load", "consume", "kafka-mock"]
        ),
    ]
)
