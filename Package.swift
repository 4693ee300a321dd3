// swift-tools-version:6.0
import PackageDescription

// Targets follow the pipeline, with no edge pointing back up it:
//
//   swift-system ── Posix   (the system layer under every target: clocks, sleep with a stop,
//                            retrying with backoff, threads, whole writes, atomic publication)
//   CLibCrypto ─┐
//   CLibYAML ── YAML ─┐
//               Ingest (the domain: contracts, CSV, line protocol, validation rules, IO)
//               ├── Validating ─┬─ validate
//               │               └─ Generating ── gen   (gen checks its rows with validate's rules)
//               ├── Watching ──── watch
//   CLibPQ ── Postgres ─┬── Loading ── load
//               Ingest ─┤
//            Telemetry ─┘  (metrics and their Prometheus endpoint; knows nothing of events)
//   CRdKafka ── Kafka ──┬── Consuming ── consume      (Kafka ── kafka-mock, for tests)
//   Ingest, Postgres ───┘
//   Ingest, Postgres ── ContractDrafting ── contract   (contract init and check, --create-table)
//
// Postgres is a libpq client that knows nothing of events (it holds the Kafka offset store's
// SQL, which consume and load share); Loading is where the two meet.
// CommandLineDialect (over Ingest and swift-argument-parser) is what the executables
// share: --log-level, one duration syntax, one runtime error, the exit codes.
let package = Package(
    name: "ecommerce-ingest",
    products: [
        .executable(name: "gen", targets: ["gen"]),
        .executable(name: "watch", targets: ["watch"]),
        .executable(name: "validate", targets: ["validate"]),
        .executable(name: "load", targets: ["load"]),
        .executable(name: "consume", targets: ["consume"]),
        .executable(name: "contract", targets: ["contract"]),
        .executable(name: "kafka-mock", targets: ["kafka-mock"]),
    ],
    dependencies: [
        // Exact pins: Package.resolved is not committed (the offline copies' commit ids differ).
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        // load's /metrics endpoint: a Prometheus registry and exposition (on swift-metrics'
        // CoreMetrics, pinned here). Its HTTP server is hand-written (Sources/Telemetry/
        // MetricsEndpoint.swift): FlyingFox, used before, linked all of Foundation into load.
        .package(url: "https://github.com/apple/swift-metrics", exact: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
        // FileDescriptor and Errno for the system layer (Sources/Posix).
        .package(url: "https://github.com/apple/swift-system", exact: "1.8.1"),
    ],
    targets: [
        // SHA-256 from the system's libcrypto (libpq-dev already brings libssl-dev).
        .systemLibrary(name: "CLibCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // libyaml, the YAML parser Yams wraps (Debian libyaml-dev), and a plain tree over it:
        // Yams itself links Foundation (+12 MB of RSS per stage, Sources/YAML/YAMLNode.swift).
        .systemLibrary(name: "CLibYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        .target(name: "YAML", dependencies: ["CLibYAML"]),
        // The system layer under every target: clocks, sleep, retrying with backoff, threads,
        // whole writes, atomic publication, mkdir -p, trimming.
        .target(name: "Posix", dependencies: [.product(name: "SystemPackage", package: "swift-system")]),
        // The domain: contracts, CSV reading, the line protocol, validation rules, file identity, IO.
        .target(
            name: "Ingest",
            dependencies: ["Posix", "CLibCrypto", "YAML", .product(name: "Logging", package: "swift-log")]
        ),
        // validate's machinery: the stage over protocol lines, a record judged against its
        // contract (the row's normal form comes from Ingest's RecordNormaliser: one call per row
        // crosses the module boundary), repeated keys, CSV files read on a thread of their own.
        .target(name: "Validating", dependencies: ["Ingest"]),
        // gen's machinery: synthetic rows (valid and invalid by rule, each checked by validate's
        // own rules) and batch files.
        .target(name: "Generating", dependencies: ["Ingest", "Validating"]),
        // watch's machinery: inotify or polling, completeness rules, the committed-files journal.
        .target(
            name: "Watching",
            dependencies: ["Ingest", .product(name: "Logging", package: "swift-log")]
        ),
        // libpq, the PostgreSQL C client library (Debian libpq-dev).
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        // libpq in Swift: connections, parameterised queries, COPY, classified errors.
        .target(
            name: "Postgres",
            dependencies: ["Posix", "CLibPQ", .product(name: "Logging", package: "swift-log")]
        ),
        // The pipeline's metrics (swift-metrics instruments) and their Prometheus endpoint.
        .target(
            name: "Telemetry",
            dependencies: [
                "Posix",
                .product(name: "CoreMetrics", package: "swift-metrics"),  // Prometheus' own; named here for the exact pin
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // load's machinery: batches, COPY, checkpoints, dead letters, archiving.
        .target(
            name: "Loading",
            dependencies: ["Ingest", "Postgres", "Telemetry", .product(name: "Logging", package: "swift-log")]
        ),
        // What the tools share on the command line: options, durations, errors, exit codes.
        .target(
            name: "CommandLineDialect",
            dependencies: [
                "Ingest",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(name: "gen", dependencies: ["Ingest", "Generating"] + cli),
        .executableTarget(name: "watch", dependencies: ["Ingest", "Watching"] + cli),
        .executableTarget(name: "validate", dependencies: ["Ingest", "Validating"] + cli),
        .executableTarget(name: "load", dependencies: ["Ingest", "Postgres", "Loading", "Telemetry"] + cli),

        // `contract init` and `--create-table`: contracts drafted from a table's catalog or a
        // sample CSV, and the table created from a contract.
        .target(name: "ContractDrafting", dependencies: ["Ingest", "Postgres"]),
        .executableTarget(name: "contract", dependencies: ["ContractDrafting", "Ingest", "Postgres"] + cli),

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
        .executableTarget(name: "consume", dependencies: ["Consuming", "Kafka", "Ingest", "Postgres"] + cli),
        // A Kafka cluster for tests (librdkafka's mock): prints its address, runs until stdin closes.
        .executableTarget(name: "kafka-mock", dependencies: ["Kafka"]),
        .testTarget(name: "IngestTests", dependencies: ["Ingest", "Generating"]),  // Generating: its seeded random source
        .testTarget(name: "ValidatingTests", dependencies: ["Ingest", "Validating", "Generating"]),  // Generating: its seeded random source
        .testTarget(name: "GeneratingTests", dependencies: ["Ingest", "Validating", "Generating"]),
        .testTarget(name: "WatchingTests", dependencies: ["Ingest", "Watching"]),
        .testTarget(name: "TelemetryTests", dependencies: ["Telemetry"]),
        .testTarget(name: "PosixTests", dependencies: ["Posix"]),
        // Shared by the test targets: a fresh database per test on the server named by PG* variables,
        // the tools run as processes, an in-memory log handler.
        .target(
            name: "TestSupport", dependencies: ["Postgres", "Ingest", .product(name: "Logging", package: "swift-log")],
            path: "Tests/TestSupport"),
        .testTarget(name: "PostgresTests", dependencies: ["Postgres", "TestSupport"]),
        // Runs the built executables as real processes joined by real pipes.
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "Ingest", "Generating", "Loading", "Postgres", "Telemetry", "TestSupport", "CommandLineDialect",
                "ContractDrafting", "gen", "watch", "validate", "load", "contract",
            ]
        ),
        // consume | validate | load against librdkafka's mock cluster, as real processes.
        .testTarget(
            name: "KafkaTests",
            dependencies: ["Ingest", "Postgres", "Kafka", "Consuming", "TestSupport", "gen", "validate", "load", "consume", "kafka-mock"]
        ),
    ]
)

var cli: [Target.Dependency] {
    [
        "CommandLineDialect",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
    ]
}
