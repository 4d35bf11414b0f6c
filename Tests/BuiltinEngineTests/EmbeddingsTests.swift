import Foundation
import Hummingbird
import HummingbirdTesting
import ModelText
import Testing

@testable import BuiltinEngine

/// `/v1/embeddings` over the tiny Qwen3-Embedding-style fixture, against sentence-transformers'
/// embeddings (scripts/make-embedding-fixture.py).
@Suite("Embeddings against sentence-transformers")
struct EmbeddingsTests {
    static let fixture: URL = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appending(path: "models/qwen3-embedding-tiny")

    struct Expected: Decodable {
        var texts: [String]
        var ids: [[Int]]
        var embeddings: [[Float]]
        var matryoshka_dimensions: Int
        var truncated: [[Float]]
    }

    static func expected() throws -> Expected {
        try JSONDecoder().decode(Expected.self, from: Data(contentsOf: fixture.appending(path: "expected.json")))
    }

    static func app(directory: URL = fixture) throws -> (some ApplicationProtocol, EngineRuntime) {
        let runtime = try EngineRuntime(directory: directory, servedName: "embed")
        return (Application(router: EngineServer(runtime: runtime).router()), runtime)
    }

    static func cosine(_ a: [Float], _ b: [Float]) -> Float {
        let dot = zip(a, b).reduce(0) { $0 + $1.0 * $1.1 }
        let norms = (a.reduce(0) { $0 + $1 * $1 } * b.reduce(0) { $0 + $1 * $1 }).squareRoot()
        return dot / norms
    }

    /// POSTs `body` to /v1/embeddings; the status and the decoded JSON object.
    static func post(_ client: some TestClientProtocol, _ body: [String: Any]) async throws -> (HTTPResponse.Status, [String: Any]) {
        try await client.execute(
            uri: "/v1/embeddings", method: .post, body: ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body))
        ) { response in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any])
            return (response.status, object)
        }
    }

    static func vectors(_ object: [String: Any]) throws -> [[Float]] {
        let data = try #require(object["data"] as? [[String: Any]])
        #expect(data.map { $0["index"] as? Int } == Array(data.indices))
        return try data.map { item in try #require(item["embedding"] as? [Double]).map(Float.init) }
    }

    @Test("the pooling files are read: last token, normalized, matryoshka")
    func poolingConfig() throws {
        let pooling = try #require(try PoolingConfig(directory: Self.fixture))
        #expect(pooling == PoolingConfig(mode: .lastToken, normalizes: true, matryoshka: true))
        #expect(try PoolingConfig(directory: Self.fixture.deletingLastPathComponent().appending(path: "qwen3-tiny")) == nil)
    }

    @Test("the older pooling_mode_X flags and their errors")
    func olderPoolingFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "pooling-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory.appending(path: "1_Pooling"), withIntermediateDirectories: true)
        let modules =
            #"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#
        try Data(modules.utf8).write(to: directory.appending(path: "modules.json"))
        func pooling(_ config: String) throws -> PoolingConfig? {
            try Data(config.utf8).write(to: directory.appending(path: "1_Pooling/config.json"))
            return try PoolingConfig(directory: directory)
        }
        #expect(
            try pooling(
                #"{"word_embedding_dimension": 8, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true, "include_prompt": true}"#)
                == PoolingConfig(mode: .mean, normalizes: false))
        #expect(throws: ModelError.self) { try pooling(#"{"pooling_mode_max_tokens": true}"#) }
        #expect(throws: ModelError.self) { try pooling(#"{"pooling_mode_lasttoken": true, "pooling_mode_mean_tokens": true}"#) }
        #expect(throws: ModelError.self) { try pooling(#"{"pooling_mode_lasttoken": true, "include_prompt": false}"#) }
    }

    @Test("embeddings of a batch equal sentence-transformers' within 1e-4 (cosine); ids as tokenizer(text)")
    func matchesSentenceTransformers() async throws {
        let expected = try Self.expected()
        let (app, runtime) = try Self.app()
        defer { runtime.scheduler.stop() }
        for (text, ids) in zip(expected.texts, expected.ids) {
            #expect(try runtime.tokenizer.encodeWithSpecialTokens(text) == ids)
        }
        try await app.test(.router) { client in
            let (status, object) = try await Self.post(client, ["model": "embed", "input": expected.texts])
            #expect(status == .ok)
            let vectors = try Self.vectors(object)
            #expect(vectors.count == expected.texts.count)
            for (index, (got, want)) in zip(vectors, expected.embeddings).enumerated() {
                #expect(got.count == 64)
                #expect(1 - Self.cosine(got, want) < 1e-4, "input \(index): cosine \(Self.cosine(got, want))")
                #expect(abs(got.reduce(0) { $0 + $1 * $1 } - 1) < 1e-4, "input \(index) is not unit length")
            }
            #expect(object["object"] as? String == "list")
            #expect(object["model"] as? String == "embed")
            let usage = try #require(object["usage"] as? [String: Int])
            #expect(usage["prompt_tokens"] == expected.ids.reduce(0) { $0 + $1.count })
            #expect(usage["total_tokens"] == usage["prompt_tokens"])
        }
    }

    @Test("one string, token arrays and base64 give the same vectors as a batch of strings")
    func inputShapes() async throws {
        let expected = try Self.expected()
        let (app, runtime) = try Self.app()
        defer { runtime.scheduler.stop() }
        try await app.test(.router) { client in
            let (_, one) = try await Self.post(client, ["input": expected.texts[2]])
            let single = try Self.vectors(one)
            #expect(single.count == 1)
            #expect(1 - Self.cosine(single[0], expected.embeddings[2]) < 1e-4)

            let (_, tokens) = try await Self.post(client, ["input": expected.ids])
            for (got, want) in zip(try Self.vectors(tokens), expected.embeddings) { #expect(1 - Self.cosine(got, want) < 1e-4) }
            let (_, oneTokens) = try await Self.post(client, ["input": expected.ids[0]])
            #expect(1 - Self.cosine(try Self.vectors(oneTokens)[0], expected.embeddings[0]) < 1e-4)

            let (status, encoded) = try await Self.post(client, ["input": expected.texts, "encoding_format": "base64"])
            #expect(status == .ok)
            let data = try #require(encoded["data"] as? [[String: Any]])
            for (item, want) in zip(data, expected.embeddings) {
                let text = try #require(item["embedding"] as? String)
                let bytes = try #require(Data(base64Encoded: text))
                #expect(bytes.count == 64 * 4)
                let floats = bytes.withUnsafeBytes { raw in (0..<64).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
                #expect(1 - Self.cosine(floats, want) < 1e-4)
            }
        }
    }

    @Test("dimensions truncates a matryoshka model's vectors and normalizes them again")
    func dimensions() async throws {
        let expected = try Self.expected()
        let (app, runtime) = try Self.app()
        defer { runtime.scheduler.stop() }
        try await app.test(.router) { client in
            let (status, object) = try await Self.post(client, ["input": expected.texts, "dimensions": expected.matryoshka_dimensions])
            #expect(status == .ok)
            for (got, want) in zip(try Self.vectors(object), expected.truncated) {
                #expect(got.count == expected.matryoshka_dimensions)
                #expect(1 - Self.cosine(got, want) < 1e-4)
                #expect(abs(got.reduce(0) { $0 + $1 * $1 } - 1) < 1e-4)
            }
        }
    }

    @Test("bad embeddings requests get 400s that say why; generation on an embedding model is refused")
    func badRequests() async throws {
        let (app, runtime) = try Self.app()
        defer { runtime.scheduler.stop() }
        try await app.test(.router) { client in
            let cases: [([String: Any], String)] = [
                (["input": []], "input must not be empty"),
                (["input": [[Int]()]], "at least one token"),
                (["input": [5, 100_000]], "outside the vocabulary"),
                (["input": [Int](repeating: 5, count: 600)], "maximum context length is 512"),
                (["input": "x", "encoding_format": "hex"], "encoding_format"),
                (["input": "x", "dimensions": 0], "dimensions must be between 1 and 64"),
                (["input": "x", "dimensions": 65], "dimensions must be between 1 and 64"),
                (["input": ["x", 3]], "input must be"),
                (["input": "x", "model": "other"], "does not exist"),
            ]
            for (body, message) in cases {
                let (status, object) = try await Self.post(client, body)
                #expect(status == .badRequest, "\(body)")
                let error = try #require(object["error"] as? [String: Any])
                #expect((error["message"] as? String)?.contains(message) == true, "\(body): \(error)")
            }
            for route in ["/v1/chat/completions", "/v1/completions"] {
                let body: [String: Any] = ["messages": [["role": "user", "content": "hi"]], "prompt": "hi", "max_tokens": 2]
                try await client.execute(uri: route, method: .post, body: ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body))) {
                    response in
                    #expect(response.status == .badRequest)
                    #expect(String(buffer: response.body).contains("is an embedding model"))
                }
            }
        }
    }

    @Test("a model without matryoshka support refuses dimensions; a generation model refuses embeddings")
    func refusals() async throws {
        let copy = FileManager.default.temporaryDirectory.appending(path: "embedding-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: copy) }
        try FileManager.default.copyItem(at: Self.fixture, to: copy)
        let configURL = copy.appending(path: "config.json")
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        config["is_matryoshka"] = nil
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        let (app, runtime) = try Self.app(directory: copy)
        defer { runtime.scheduler.stop() }
        try await app.test(.router) { client in
            let (status, object) = try await Self.post(client, ["input": "x", "dimensions": 8])
            #expect(status == .badRequest)
            #expect(((object["error"] as? [String: Any])?["message"] as? String)?.contains("matryoshka") == true)
            #expect(try await Self.post(client, ["input": "x"]).0 == .ok)
        }
        let (generator, generatorRuntime) = try EngineServerTests.app()
        defer { generatorRuntime.scheduler.stop() }
        try await generator.test(.router) { client in
            let (status, object) = try await Self.post(client, ["input": "x"])
            #expect(status == .badRequest)
            #expect(((object["error"] as? [String: Any])?["message"] as? String)?.contains("not an embedding model") == true)
        }
    }

    @Test("concurrent embedding requests each get their own vector")
    func concurrent() async throws {
        let expected = try Self.expected()
        let (app, runtime) = try Self.app()
        defer { runtime.scheduler.stop() }
        try await app.test(.router) { client in
            try await withThrowingTaskGroup(of: (Int, [Float]).self) { group in
                for index in 0..<12 {
                    group.addTask {
                        let text = index % expected.texts.count
                        let (_, object) = try await Self.post(client, ["input": expected.texts[text]])
                        return (text, try Self.vectors(object)[0])
                    }
                }
                for try await (text, vector) in group {
                    #expect(1 - Self.cosine(vector, expected.embeddings[text]) < 1e-4)
                }
            }
        }
    }
}
