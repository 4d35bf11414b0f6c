import Catalog
import Foundation
import ModelStore
import ModeldAPI
import ModeldClient
import Testing

@testable import Daemon

@Suite("GET /api/v1/status on a live daemon")
struct StatusTests {
    /// The status in its envelope, read with `key`.
    static func status(_ daemon: DaemonProcess, key: String? = nil) async throws -> DaemonStatus {
        let (code, body) = try await KeysTests.get(daemon, "/api/v1/status", key: key)
        #expect(code == 200, "\(body)")
        return try #require(try WireJSON.decoder().decode(Envelope<DaemonStatus>.self, from: Data(body.utf8)).data)
    }

    @Test("version, data directory use and space, runs by state, versions and tokens served follow what the daemon did; admin key needed")
    func status() async throws {
        try await withFakeVLLMDaemon { daemon, _ in
            let pulled = try await daemon.modelctl(["list", "--json"])
            let local = try WireJSON.decoder().decode([LocalVersionInfo].self, from: Data(pulled.stdout.utf8))
            let before = try await Self.status(daemon)
            #expect(before.version == modeldVersion)
            #expect(before.dataDir == daemon.root.path)
            #expect(before.versions == 1 && local.count == 1)
            #expect(before.dataDirBytes == local.reduce(0) { $0 + $1.sizeBytes } && before.dataDirBytes > 0)
            let space = try FileManager.default.attributesOfFileSystem(forPath: daemon.root.path)
            #expect(before.totalBytes == (space[.systemSize] as? NSNumber)?.int64Value)
            let free = try #require(before.freeBytes)
            let total = try #require(before.totalBytes)
            #expect(free > 0 && free <= total)
            #expect(before.runs == Dictionary(uniqueKeysWithValues: RunState.allCases.map { ($0.rawValue, 0) }))
            #expect(before.tokensServed == .init(prompt: 0, completion: 0))
            #expect(before.uptimeSeconds >= 0)

            let started = try await daemon.modelctl(["start", "acme/tiny", "--engine", "vllm", "--name", "first", "--wait"])
            #expect(started.status == 0, "\(started.stderr)")
            let reply = try await LLMAPITests.post(
                daemon, "/v1/chat/completions", #"{"model": "first", "messages": [{"role": "user", "content": "Hi there"}]}"#)
            #expect(reply.status == 200, "\(reply.body)")
            let usage = LLMAPITests.usage(try #require(try JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any]))
            let after = try await Self.status(daemon)
            #expect(after.runs["ready"] == 1 && after.runs.values.reduce(0, +) == 1, "\(after.runs)")
            let served = DaemonStatus.TokensServed(prompt: try #require(usage["prompt_tokens"]), completion: try #require(usage["completion_tokens"]))
            #expect(after.tokensServed == served)
            #expect(after.tokensServed.completion > 0)

            // Like every management route, it needs an admin key once keys exist.
            let created = try await daemon.modelctl(["keys", "create", "--name", "ops", "--scope", "admin"])
            let adminKey = String(created.stdout.split(separator: "\n").last ?? "")
            let inference = try await daemon.modelctl(["keys", "create", "--name", "app"])
            let inferenceKey = String(inference.stdout.split(separator: "\n").last ?? "")
            #expect(try await KeysTests.get(daemon, "/api/v1/status").0 == 401)
            #expect(try await KeysTests.get(daemon, "/api/v1/status", key: inferenceKey).0 == 403)
            #expect(try await Self.status(daemon, key: adminKey).versions == 1)
        }
    }
}
