import FakeHub
import Foundation
import Logging
import ModeldAPI
import Synchronization
import Testing

@testable import Archives
@testable import Catalog
@testable import Downloads
@testable import Hubs
@testable import ModelStore

/// A data directory, a store and a running pull service pointed at a fake hub.
struct PullHarness: Sendable {
    let data: DataDirectory
    let store: Store
    let service: PullService
    let hub: FakeHub

    /// Exports, imports and adoptions into the same data directory.
    var archives: ArchiveService { ArchiveService(pulls: service) }

    var hubCache: URL { data.huggingFaceHub }

    func repoDirectory(_ repo: String) -> URL { HuggingFaceCache(root: data.huggingFaceHub).repoDirectory(repo) }

    /// Pulls and waits; returns the snapshot path or throws the job's ``PullError``.
    @discardableResult
    func pull(_ repo: String, revision: String? = nil, source: ModelSource = .huggingface, include: [String] = [], exclude: [String] = [])
        async throws -> String
    {
        try await service.pull(PullRequest(source: source, repo: repo, revision: revision, include: include, exclude: exclude)).result()
    }

    /// Pulls and collects every event.
    func pullEvents(_ repo: String, revision: String? = nil) async -> [PullEvent] {
        var events: [PullEvent] = []
        for await event in service.pull(PullRequest(repo: repo, revision: revision)).events() { events.append(event) }
        return events
    }

    /// Pulls expecting failure; returns the error.
    func pullError(_ repo: String, revision: String? = nil, source: ModelSource = .huggingface) async -> PullError? {
        do {
            _ = try await pull(repo, revision: revision, source: source)
            return nil
        } catch {
            return error as? PullError
        }
    }

    /// Files in `<data>/tmp`.
    func temporaryFiles() -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: data.tmp.path)) ?? []
    }
}

/// Retries fast so fault tests take milliseconds, not the default 1-8 s.
let fastRetry = RetryPolicy(maxAttempts: 4, delays: [.milliseconds(20)], maxRetryAfter: .seconds(5), checksumAttempts: 3)

/// Runs `body` with a fresh data directory and a running ``PullService`` for `hub`.
/// - Parameter dataRoot: reuse a data directory (to simulate a daemon restart).
func withPullService(
    hub: FakeHub, token: String? = nil, dataRoot: URL? = nil, logs: LogCollector? = nil,
    configure: @Sendable (inout PullConfiguration) -> Void = { _ in },
    _ body: @Sendable (PullHarness) async throws -> Void
) async throws {
    let root = dataRoot ?? FileManager.default.temporaryDirectory.appending(path: "modeld-pull-\(UUID().uuidString)", directoryHint: .isDirectory)
    let data = DataDirectory(root: root)
    try data.prepare()
    let store = try Store(path: data.database.path)
    var configuration = PullConfiguration(
        dataDirectory: data, huggingFace: HuggingFaceSettings(endpoint: hub.endpoint + "/", token: token),
        modelScope: ModelScopeSettings(endpoint: hub.endpoint, token: token), retry: fastRetry, stallTimeout: .seconds(5),
        progressInterval: .milliseconds(20))
    configure(&configuration)
    var logger = Logger(label: "modeld.pull")
    if let logs {
        logger = Logger(label: "modeld.pull") { _ in CollectingLogHandler(collector: logs) }
        logger.logLevel = .trace
    }
    let service = PullService(configuration: configuration, store: store, logger: logger)
    let harness = PullHarness(data: data, store: store, service: service, hub: hub)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await service.run() }
        do {
            try await body(harness)
            group.cancelAll()
        } catch {
            group.cancelAll()
            throw error
        }
    }
    if dataRoot == nil { try? FileManager.default.removeItem(at: root) }
}

/// Deterministic pseudo-random bytes.
func testBytes(_ count: Int, seed: UInt64) -> Data {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    var data = Data(count: count)
    data.withUnsafeMutableBytes { raw in
        let words = raw.bindMemory(to: UInt8.self)
        var index = 0
        while index < count {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            var value = state
            for _ in 0..<8 where index < count {
                words[index] = UInt8(truncatingIfNeeded: value)
                value >>= 8
                index += 1
            }
        }
    }
    return data
}

/// The standard small repository: two regular files (one nested), an LFS safetensors file and a .bin duplicate.
func tinyCommit(weights: Data = testBytes(3 << 20, seed: 1), config: String = "{\"model_type\": \"llama\"}") -> FakeCommit {
    FakeCommit(files: [
        FakeFile("config.json", config),
        FakeFile("tokenizer.json", "{\"version\": \"1.0\"}"),
        FakeFile("sub/extra.txt", "nested file\n"),
        FakeFile("model.safetensors", weights),
        FakeFile("pytorch_model.bin", testBytes(1 << 20, seed: 99)),
    ])
}

func readLink(_ url: URL) -> String? {
    try? FileManager.default.destinationOfSymbolicLink(atPath: url.path)
}

func fileText(_ url: URL) -> String? {
    try? String(contentsOf: url, encoding: .utf8)
}

/// Every log line a ``PullService`` wrote, message and metadata rendered as text.
final class LogCollector: Sendable {
    private let lines = Mutex<[String]>([])

    var all: [String] { lines.withLock { $0 } }

    func append(_ line: String) { lines.withLock { $0.append(line) } }
}

struct CollectingLogHandler: LogHandler {
    let collector: LogCollector
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        collector.append("\(event.level) \(event.message) \(merged.map { "\($0)=\($1)" }.sorted().joined(separator: " "))")
    }
}
