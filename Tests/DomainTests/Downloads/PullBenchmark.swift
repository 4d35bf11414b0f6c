import Foundation
import Testing

@testable import Catalog
@testable import Downloads
@testable import Hubs
@testable import ModelStore

/// The pull half of `scripts/bench-pull.sh`: pulls `MODELD_BENCH_REPO` from `MODELD_BENCH_ENDPOINT` into
/// `MODELD_BENCH_DATA`. It runs only when the script sets those variables (a benchmark, not a check).
@Suite("Pull benchmark")
struct PullBenchmark {
    static let environment = ProcessInfo.processInfo.environment

    @Test("pull a repository from a loopback hub", .enabled(if: environment["MODELD_BENCH_ENDPOINT"] != nil, "run by scripts/bench-pull.sh"))
    func pull() async throws {
        let endpoint = try #require(Self.environment["MODELD_BENCH_ENDPOINT"])
        let repo = Self.environment["MODELD_BENCH_REPO"] ?? "bench/big"
        let root = URL(filePath: Self.environment["MODELD_BENCH_DATA"] ?? NSTemporaryDirectory() + "modeld-bench")
        let data = DataDirectory(root: root)
        try data.prepare()
        let store = try Store(path: data.database.path)
        var configuration = PullConfiguration(
            dataDirectory: data, huggingFace: HuggingFaceSettings(endpoint: endpoint),
            concurrency: Int(Self.environment["MODELD_BENCH_CONCURRENCY"] ?? "4") ?? 4)
        configuration.parallelRanges = Int(Self.environment["MODELD_BENCH_RANGES"] ?? "4") ?? 4
        let service = PullService(configuration: configuration, store: store)
        let clock = ContinuousClock()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await service.run() }
            let start = clock.now
            let path = try await service.pull(PullRequest(repo: repo)).result()
            let elapsed = clock.now - start
            print("bench: pulled \(repo) to \(path) in \(elapsed)")
            group.cancelAll()
        }
    }
}

extension PullBenchmark {
    @Test("hash speed in this build", .enabled(if: environment["MODELD_BENCH_HASH"] != nil, "run by hand"))
    func hashSpeed() {
        let data = testBytes(256 << 20, seed: 1)
        let clock = ContinuousClock()
        for kind in [HashKind.sha256, .gitSHA1] {
            var hasher = ContentHasher(kind: kind, size: Int64(data.count))
            let start = clock.now
            for _ in 0..<4 {
                data.withUnsafeBytes { raw in
                    var offset = 0
                    while offset < raw.count {
                        let end = min(offset + (8 << 20), raw.count)
                        hasher.update(UnsafeRawBufferPointer(rebasing: raw[offset..<end]))
                        offset = end
                    }
                }
            }
            _ = hasher.finalize()
            let elapsed = clock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            print("bench: \(kind.rawValue) \(Int(Double(data.count * 4) / seconds / 1e6)) MB/s")
        }
    }
}
