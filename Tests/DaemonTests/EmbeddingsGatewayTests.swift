import FakeHub
import Foundation
import ModeldAPI
import Testing

/// `/v1/embeddings` (and Ollama's `/api/embed`) through the daemon's gateway to a built-in run of the tiny
/// Qwen3-Embedding-style fixture, against sentence-transformers' vectors (scripts/make-embedding-fixture.py).
@Suite("Embeddings through the gateway")
struct EmbeddingsGatewayTests {
    static let directory = URL(filePath: #filePath).deletingLastPathComponent()
        .appending(path: "../BuiltinEngineTests/Fixtures/models/qwen3-embedding-tiny").standardized
    static let names = [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "modules.json", "sentence_bert_config.json",
        "1_Pooling/config.json", "2_Normalize/config.json",
    ]

    struct Expected: Decodable {
        var texts: [String]
        var ids: [[Int]]
        var embeddings: [[Double]]
    }

    static func cosine(_ a: [Double], _ b: [Double]) -> Double {
        let dot = zip(a, b).reduce(0) { $0 + $1.0 * $1.1 }
        return dot / (a.reduce(0) { $0 + $1 * $1 } * b.reduce(0) { $0 + $1 * $1 }).squareRoot()
    }

    @Test("a built-in run of an embedding model answers /v1/embeddings and /api/embed through the gateway; generation is refused")
    func gateway() async throws {
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: Self.directory.appending(path: "expected.json")))
        let files = try Self.names.map { name in
            FakeFile(name, try Data(contentsOf: Self.directory.appending(path: name)), lfs: name.hasSuffix(".safetensors"))
        }
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/embed-tiny", commits: [FakeCommit(files: files)])
            let daemon = try await DaemonProcess(extraEnvironment: ["HF_ENDPOINT": hub.endpoint])
            do {
                let pulled = try await daemon.modelctl(["pull", "acme/embed-tiny"])
                #expect(pulled.status == 0, "\(pulled.stderr)")
                let started = try await daemon.modelctl(["start", "acme/embed-tiny", "--engine", "builtin", "--name", "embed", "--wait"])
                #expect(started.status == 0, "\(started.stderr)\nmodeld log:\n\(daemon.log)")

                let reply = try await LLMAPITests.post(daemon, "/v1/embeddings", try LLMAPITests.json(["model": "embed", "input": expected.texts]))
                #expect(reply.status == 200, "\(reply.body)")
                let object = try #require(try JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any])
                let data = try #require(object["data"] as? [[String: Any]], "\(reply.body)")
                #expect(data.count == expected.texts.count)
                for (item, want) in zip(data, expected.embeddings) {
                    let got = try #require(item["embedding"] as? [Double])
                    #expect(1 - Self.cosine(got, want) < 1e-4)
                }
                #expect((object["usage"] as? [String: Int])?["prompt_tokens"] == expected.ids.reduce(0) { $0 + $1.count })

                // Ollama's /api/embed reaches the same engine route.
                let ollama = try await LLMAPITests.post(daemon, "/api/embed", try LLMAPITests.json(["model": "embed", "input": expected.texts[0]]))
                #expect(ollama.status == 200, "\(ollama.body)")
                let embeddings = try #require(
                    (try JSONSerialization.jsonObject(with: Data(ollama.body.utf8)) as? [String: Any])?["embeddings"] as? [[Double]], "\(ollama.body)"
                )
                #expect(embeddings.count == 1 && 1 - Self.cosine(embeddings[0], expected.embeddings[0]) < 1e-4)

                // An embedding model does not generate: a 400 that says so, through the gateway.
                let chat = try await LLMAPITests.post(
                    daemon, "/v1/chat/completions", try LLMAPITests.json(["model": "embed", "messages": [["role": "user", "content": "hi"]]]))
                #expect(chat.status == 400 && chat.body.contains("embedding model"), "\(chat.body)")
            } catch {
                try await daemon.stop()
                throw error
            }
            try await daemon.stop()
        }
    }
}
