// swift-tools-version:6.2
import PackageDescription

/// Settings every target shares: Swift 6 mode plus the upcoming features the project adopts.
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

/// The built-in engine's numeric code is compiled optimised even in debug builds, with AVX2/FMA
/// (docs/builtin-engine.md, Compile settings): tests run real forward passes and would crawl at -Onone.
/// Only the numeric kernels and the forward pass (`EngineCompute`): whatever reads input from outside is
/// checked.
let engineSettings: [SwiftSetting] =
    swiftSettings + [
        .unsafeFlags(["-Ounchecked", "-enforce-exclusivity=unchecked", "-target-cpu", "haswell"])
    ]

/// The engine's AVX-512 kernels: the same, one CPU level up. The engine calls them only after
/// checking the CPU (`InstructionSet.best`).
let avx512Settings: [SwiftSetting] =
    swiftSettings + [
        .unsafeFlags(["-Ounchecked", "-enforce-exclusivity=unchecked", "-target-cpu", "skylake-avx512"])
    ]

let package = Package(
    name: "modeld",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "modeld", targets: ["Daemon"]),
        .executable(name: "modelctl", targets: ["modelctl"]),
        .library(name: "BuiltinEngine", targets: ["BuiltinEngine"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        // Tracing (docs/tracing.md): OTLP over HTTP/protobuf only; the gRPC exporter's trait stays off.
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.3.0"),
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        // C libraries, each entering through one system library target with its apt provider.
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        // SQLite enters through GRDB's own system library target, GRDBSQLite (apt: libsqlite3-dev).

        /// The one Swift wrapper around libcurl: easy and multi handles, used for downloads and by the client.
        .target(
            name: "Transfer",
            dependencies: ["CCurl"],
            swiftSettings: swiftSettings
        ),
        /// Wire types of the management and LLM APIs (Codable, no I/O), shared by the daemon, modelctl and tests.
        .target(
            name: "ModeldAPI",
            swiftSettings: swiftSettings
        ),
        /// The client of the management API over libcurl, used by modelctl and by tests as any web client would.
        .target(
            name: "ModeldClient",
            dependencies: ["ModeldAPI", "Transfer"],
            swiftSettings: swiftSettings
        ),
        /// The model catalog: the catalog file, its built-in entries, model references and their validation.
        .target(
            name: "Catalog",
            swiftSettings: swiftSettings
        ),
        /// The Hugging Face and ModelScope hub clients: URLs, safe file paths, file listing and selection,
        /// retried requests, content hashes and the hub errors.
        .target(
            name: "Hubs",
            dependencies: [
                "Transfer",
                "ModelText",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        /// What modeld keeps on disk: the data directory, the SQLite store (models, versions, runs, API keys) and
        /// the model cache (`ModelCache`: version directories, blobs, repository claims, installs).
        .target(
            name: "ModelStore",
            dependencies: [
                "Catalog",
                "Hubs",
                "ModeldAPI",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        /// Pulls from the hubs into the model cache: jobs, file fetching with ranges, retries and rate limits,
        /// verification and removal of versions.
        .target(
            name: "Downloads",
            dependencies: [
                "Hubs",
                "ModelStore",
                "Catalog",
                "ModeldAPI",
                "Transfer",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        /// Models that arrive or leave without a hub: archive export and import (libarchive), and adoption of
        /// existing Hugging Face caches and model directories.
        .target(
            name: "Archives",
            dependencies: [
                "Downloads",
                "Hubs",
                "ModelStore",
                "Catalog",
                "ModeldAPI",
                "ModelText",
                "CArchive",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The one fork/exec of engines: PDEATHSIG, session, signal reset and fd closing in the child.
        .target(name: "CSpawn"),
        /// Engine launch contracts, the supervisor and the run scheduler.
        .target(
            name: "Launchers",
            dependencies: [
                "Catalog",
                "ModelStore",
                "ModeldAPI",
                "CSpawn",
                "Transfer",
                "ModelText",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The built-in engine's compute-bound matrix kernels compiled for AVX-512.
        .target(name: "EngineAVX512", swiftSettings: avx512Settings),
        /// The built-in engine's AMX-BF16 prefill matrix multiply, in C: its functions carry their own
        /// `target` attributes, and the engine calls them only after `amx_bf16_usable()` says so.
        .target(name: "CEngineAMX", cSettings: [.unsafeFlags(["-O3"])]),
        /// What the engine and the daemon read from outside: the tokenizer, chat templates (Jinja), ordered
        /// JSON and the JSON limits, a model's config files and safetensors headers. Ordinary (checked)
        /// settings: a bad index or a failed precondition on untrusted input traps instead of being undefined.
        .target(
            name: "ModelText",
            swiftSettings: swiftSettings
        ),
        /// The built-in engine's numeric kernels and the model's forward pass, unchecked for speed: they
        /// index only what ModelText has validated (tensor shapes, token ids the engine checked).
        .target(
            name: "EngineCompute",
            dependencies: ["ModelText", "EngineAVX512", "CEngineAMX"],
            swiftSettings: engineSettings
        ),
        /// The built-in inference engine: sampling, generation, batching and its OpenAI server, checked.
        .target(
            name: "BuiltinEngine",
            dependencies: [
                "EngineCompute",
                "ModelText",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The `modeld` executable: HTTP API, gateway, systemd integration, and `modeld engine`.
        .executableTarget(
            name: "Daemon",
            dependencies: [
                "Catalog",
                "ModelStore",
                "Hubs",
                "Downloads",
                "Archives",
                "Launchers",
                "BuiltinEngine",
                "ModelText",
                "ModeldAPI",
                "CSystemd",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdHTTP2", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The command-line client: a client of the daemon like any web client.
        .executableTarget(
            name: "modelctl",
            dependencies: [
                "ModeldAPI",
                "ModeldClient",
                "Transfer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),

        /// A fake Hugging Face / ModelScope hub on loopback (docs/design/hubs.md), shared by the test targets.
        .target(
            name: "FakeHub",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Tests/FakeHub",
            swiftSettings: [.swiftLanguageMode(.v6), .enableUpcomingFeature("ExistentialAny")]
        ),
        /// Tests of the domain modules, one folder each: Catalog, ModelStore (Store), Hubs, Downloads, Archives, and the
        /// daemon's configuration resolution.
        .testTarget(
            name: "DomainTests",
            dependencies: [
                "Catalog",
                "ModelStore",
                "Hubs",
                "Downloads",
                "Archives",
                "Daemon",
                "ModeldAPI",
                "FakeHub",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LaunchersTests",
            dependencies: [
                "Launchers",
                "Catalog",
                "ModelStore",
                "Transfer",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        /// A stand-in for vLLM, SGLang, Ollama and the built-in engine, built for LaunchersTests; its
        /// `supervise` mode is a throw-away daemon the tests SIGKILL.
        .executableTarget(
            name: "fake-engine",
            dependencies: [
                "Launchers",
                "ModelStore",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Tests/FakeEngine",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BuiltinEngineTests",
            dependencies: ["BuiltinEngine", "EngineCompute", "ModelText", .product(name: "HummingbirdTesting", package: "hummingbird")],
            resources: [.copy("Fixtures")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DaemonTests",
            dependencies: [
                "Daemon",
                "Launchers",
                "ModeldAPI",
                "ModeldClient",
                "FakeHub",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
