import FakeHub
import Foundation
import ModeldAPI
import Testing

/// The earlier services' request shapes (docs/older-api.md) against a real daemon with the built-in engine on the
/// tiny model: a catalog of the earlier format, the older field names, the schema shorthand, their routes, and
/// `default_model`. Each answer is compared with the one the current API gives for the same request.
@Suite("The older API shapes")
struct OlderShapesTests {
    typealias Reply = LLMAPITests.Reply

    static func post(_ daemon: DaemonProcess, _ path: String, _ body: [String: Any]) async throws -> Reply {
        try await LLMAPITests.post(daemon, path, try LLMAPITests.json(body))
    }

    /// A catalog in the earlier format: a size in capitals, no `default_engine`, formats.
    static let olderCatalog = """
        {"models": [{"id": "tinyfam", "name": "Tiny", "description": "The tiny test model", "official_url": "https://example.com/tiny",
          "sizes": [{"size": "0.5B", "hf_repo": "acme/qwen2-tiny"}], "quantizations": ["bf16"], "engines": ["builtin", "vllm"],
          "formats": ["safetensors"]}]}
        """

    @Test("older catalog, model_id/engine_type, model_name, schema shorthand, /generate, /api/count-tokens, /api/generate, default_model")
    func olderShapes() async throws {
        let files = try TinyQwen2.hubFiles()
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/qwen2-tiny", commits: [FakeCommit(files: files)])
            let catalog = FileManager.default.temporaryDirectory.appending(path: "modeld-older-\(UUID().uuidString.prefix(8)).json")
            try Data(Self.olderCatalog.utf8).write(to: catalog)
            defer { try? FileManager.default.removeItem(at: catalog) }
            let daemon = try await DaemonProcess(
                extraEnvironment: ["HF_ENDPOINT": hub.endpoint, "MODELD_CATALOG": catalog.path, "MODELD_DEFAULT_MODEL": "tiny"])
            do {
                try await Self.catalogAndStart(daemon)
                try await Self.llmNames(daemon)
                try await Self.olderRoutes(daemon)
            } catch {
                try await daemon.stop()
                throw error
            }
            try await daemon.stop()
        }
    }

    /// The older catalog is read (size lower-cased, first engine the default, formats kept); `model_id` and
    /// `engine_type` start a run of it.
    static func catalogAndStart(_ daemon: DaemonProcess) async throws {
        let listed = try await runProcess(
            URL(filePath: "/usr/bin/curl"), ["-s", "http://127.0.0.1:\(daemon.port)/api/v1/models/tinyfam:0.5b"])
        #expect(listed.stdout.contains(#""default_engine":"builtin""#), "\(listed.stdout)")
        #expect(listed.stdout.contains(#""formats":["safetensors"]"#), "\(listed.stdout)")
        #expect(listed.stdout.contains(#""size":"0.5b""#), "\(listed.stdout)")

        #expect(try await daemon.modelctl(["pull", "tinyfam:0.5b"]).status == 0)
        let both = try await post(daemon, "/api/v1/models/start", ["model": "tinyfam:0.5b", "model_id": "tinyfam:0.5b"])
        #expect(both.status == 400 && both.message.contains("model_id"), "\(both.body)")
        let badEngine = try await post(daemon, "/api/v1/models/start", ["model_id": "tinyfam:0.5b", "engine_type": "nosuch"])
        #expect(badEngine.status == 400 && badEngine.message.contains("nosuch"), "\(badEngine.body)")
        // Without an engine, the older catalog's first one: builtin.
        let started = try await post(daemon, "/api/v1/models/start", ["model_id": "tinyfam:0.5b", "name": "tiny"])
        #expect(started.status == 200 && started.data["engine"] as? String == "builtin", "\(started.body)")
        try await ready(daemon, "tiny")
        let other = try await post(daemon, "/api/v1/models/start", ["model_id": "acme/qwen2-tiny", "engine_type": "builtin", "name": "tiny2"])
        #expect(other.status == 200 && other.data["engine"] as? String == "builtin" && other.data["name"] as? String == "tiny2", "\(other.body)")
        #expect(try await daemon.modelctl(["stop", "tiny2"]).status == 0)
    }

    /// Waits until the run is ready, for at most 60 s.
    static func ready(_ daemon: DaemonProcess, _ name: String) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let run = try await runProcess(URL(filePath: "/usr/bin/curl"), ["-s", "http://127.0.0.1:\(daemon.port)/api/v1/models/running/\(name)"])
            if run.stdout.contains(#""state":"ready""#) { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("run \(name) did not become ready: \(daemon.log)")
    }

    /// `model_name` and `engine_type` on the LLM API; the schema shorthand on structured-generate.
    static func llmNames(_ daemon: DaemonProcess) async throws {
        let ask: [String: Any] = ["prompt": "Hello there", "max_tokens": 4, "ignore_eos": true, "temperature": 0]
        let current = try await post(daemon, "/api/v1/llm/generate", ask.merging(["model": "tiny"]) { $1 })
        #expect(current.status == 200, "\(current.body)")
        let older = try await post(daemon, "/api/v1/llm/generate", ask.merging(["model_name": "tiny", "engine_type": "builtin"]) { $1 })
        #expect(older.status == 200 && older.data["text"] as? String == current.data["text"] as? String, "\(older.body)")
        let chat = try await post(
            daemon, "/api/v1/llm/chat",
            ["model_name": "tiny", "engine_type": "BUILTIN", "messages": [["role": "user", "content": "Hi"]], "max_tokens": 3, "temperature": 0])
        #expect(chat.status == 200 && (chat.data["message"] as? [String: Any])?["role"] as? String == "assistant", "\(chat.body)")
        let unknown = try await post(daemon, "/api/v1/llm/generate", ask.merging(["model_name": "tiny", "engine_type": "tgi"]) { $1 })
        #expect(unknown.status == 400 && unknown.message.contains("engine_type"), "\(unknown.body)")
        let both = try await post(daemon, "/api/v1/llm/generate", ask.merging(["model_name": "tiny", "model": "tiny"]) { $1 })
        #expect(both.status == 400, "\(both.body)")

        let shorthand = try await post(
            daemon, "/api/v1/llm/structured-generate",
            [
                "model": "tiny", "prompt": "A person", "max_tokens": 64, "temperature": 0,
                "schema": ["name": "string", "age": "int", "tags": ["str"], "home": ["city": "string"]],
            ])
        #expect(shorthand.status == 200, "\(shorthand.body)")
        if let json = shorthand.data["json"] as? [String: Any] {
            #expect(json["name"] is String && json["age"] as? Int != nil && json["tags"] is [Any], "\(shorthand.body)")
            #expect((json["home"] as? [String: Any])?["city"] is String, "\(shorthand.body)")
            #expect(Set(json.keys) == ["name", "age", "tags", "home"], "every field required, no others: \(shorthand.body)")
        } else {
            #expect(shorthand.data["finish_reason"] as? String == "length", "not JSON only when cut off: \(shorthand.body)")
        }
        let badType = try await post(daemon, "/api/v1/llm/structured-generate", ["model": "tiny", "prompt": "x", "schema": ["name": "strng"]])
        #expect(badType.status == 400 && badType.message.contains("schema.name") && badType.message.contains("strng"), "\(badType.body)")
        // A real JSON Schema is left alone: `type` marks it.
        let schema = try await post(
            daemon, "/api/v1/llm/structured-generate",
            ["model": "tiny", "prompt": "x", "max_tokens": 8, "temperature": 0, "schema": ["type": "boolean"]])
        #expect(schema.status == 200 && schema.data["json"] as? Bool != nil, "\(schema.body)")
    }

    /// `/generate`, `/api/count-tokens`, `/api/generate` (both readings) and `default_model` on `/v1/chat/completions`.
    static func olderRoutes(_ daemon: DaemonProcess) async throws {
        let sampling: [String: Any] = ["max_tokens": 4, "ignore_eos": true, "temperature": 0]
        let prompts = ["Hello there", "The sky is"]
        let batch = try await post(daemon, "/generate", ["prompts": prompts, "sampling_params": sampling])
        #expect(batch.status == 200, "\(batch.body)")
        let completions = try #require(
            (try JSONSerialization.jsonObject(with: Data(batch.body.utf8)) as? [String: Any])?["data"] as? [[String: Any]], "\(batch.body)")
        #expect(completions.map { $0["index"] as? Int } == [0, 1])
        for (index, prompt) in prompts.enumerated() {
            let one = try await post(daemon, "/api/v1/llm/generate", sampling.merging(["model": "tiny", "prompt": prompt]) { $1 })
            #expect(completions[index]["text"] as? String == one.data["text"] as? String, "\(batch.body)")
            #expect((completions[index]["usage"] as? [String: Int])?["completion_tokens"] == 4)
        }
        #expect(try await post(daemon, "/generate", ["prompts": [String]()]).status == 400)
        #expect(try await post(daemon, "/generate", ["prompts": ["x"], "sampling_params": "hot"]).status == 400)

        let counted = try await post(daemon, "/api/count-tokens", ["text": "Hello world, hello tokens"])
        let current = try await post(daemon, "/api/v1/llm/count-tokens", ["model": "tiny", "text": "Hello world, hello tokens"])
        #expect(counted.status == 200 && counted.data["tokens"] as? Int == current.data["tokens"] as? Int, "\(counted.body)")
        let missing = try await post(daemon, "/api/count-tokens", ["model": "tiny"])
        #expect(missing.status == 400 && missing.body.contains(#""code":400"#), "errors in the envelope: \(missing.body)")

        // /api/generate without model: the earlier RAG shape, SSE deltas then [DONE].
        let ask: [String: Any] = ["prompt": "Hi", "max_tokens": 5, "ignore_eos": true, "temperature": 0]
        let streamed = try await post(daemon, "/api/generate", ask.merging(["stream": true]) { $1 })
        #expect(streamed.status == 200, "\(streamed.body)")
        let events = streamed.body.split(separator: "\n\n").map { $0.hasPrefix("data: ") ? String($0.dropFirst(6)) : "not an event: \($0)" }
        #expect(events.last == "[DONE]", "\(streamed.body)")
        let deltas = events.dropLast().compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: String] }
        #expect(deltas.count == events.count - 1 && deltas.allSatisfy { $0.keys.sorted() == ["delta"] }, "\(streamed.body)")
        let whole = try await post(daemon, "/api/generate", ask)
        #expect(whole.status == 200 && deltas.compactMap { $0["delta"] }.joined() == whole.data["text"] as? String, "\(whole.body)")
        let chat = try await post(
            daemon, "/api/v1/llm/chat", ask.merging(["model": "tiny", "messages": [["role": "user", "content": "Hi"]]]) { $1 })
        #expect(whole.data["text"] as? String == (chat.data["message"] as? [String: Any])?["content"] as? String, "through the chat template")
        let empty = try await post(daemon, "/api/generate", ["prompt": ""])
        #expect(empty.status == 400 && empty.body.contains(#""msg":"prompt must not be empty""#), "\(empty.body)")
        // With model: Ollama's /api/generate.
        let ollama = try await post(daemon, "/api/generate", ask.merging(["model": "tiny", "stream": false]) { $1 })
        let object = try #require(try JSONSerialization.jsonObject(with: Data(ollama.body.utf8)) as? [String: Any], "\(ollama.body)")
        #expect(ollama.status == 200 && object["response"] is String && object["done"] as? Bool == true, "\(ollama.body)")
        let ollamaEmpty = try await post(daemon, "/api/generate", ["model": ""])
        #expect(ollamaEmpty.status == 400 && ollamaEmpty.body == #"{"error":"model is required"}"#, "\(ollamaEmpty.body)")

        // default_model: /v1/chat/completions without model.
        let openAI = try await post(
            daemon, "/v1/chat/completions", ["messages": [["role": "user", "content": "Hi"]], "max_tokens": 5, "ignore_eos": true, "temperature": 0])
        let reply = try #require(try JSONSerialization.jsonObject(with: Data(openAI.body.utf8)) as? [String: Any], "\(openAI.body)")
        #expect(openAI.status == 200 && reply["model"] as? String == "tiny", "\(openAI.body)")
        let choices = reply["choices"] as? [[String: Any]]
        #expect((choices?.first?["message"] as? [String: Any])?["content"] as? String == whole.data["text"] as? String, "\(openAI.body)")
    }
}
