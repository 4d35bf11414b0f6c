import Foundation
import Hummingbird
import HummingbirdTesting
import ModelText
import Testing

@testable import BuiltinEngine

/// The OpenAI-compatible server over the tiny Qwen2 fixture (and the mixture-of-experts one where named), whose
/// expected ids come from transformers.
@Suite("Engine server (OpenAI API)")
struct EngineServerTests {
    static func fixture(_ name: String = "qwen2-tiny") -> URL {
        Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appending(path: "models/\(name)")
    }

    struct Expected: Decodable {
        var promptIDs: [Int]
        var greedyIDs: [Int]
        var chatPromptIDs: [Int]
        var messages: [[String: String]]
        enum CodingKeys: String, CodingKey {
            case messages
            case promptIDs = "prompt_ids"
            case greedyIDs = "greedy_ids"
            case chatPromptIDs = "chat_prompt_ids"
        }
    }

    static func expected(_ name: String = "qwen2-tiny") throws -> Expected {
        try JSONDecoder().decode(Expected.self, from: Data(contentsOf: fixture(name).appending(path: "expected.json")))
    }

    static func app(_ name: String = "qwen2-tiny") throws -> (some ApplicationProtocol, EngineRuntime) {
        let runtime = try EngineRuntime(directory: fixture(name), servedName: "tiny")
        return (Application(router: EngineServer(runtime: runtime).router()), runtime)
    }

    static func json(_ object: [String: Any]) throws -> ByteBuffer {
        ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: object))
    }

    static func object(_ buffer: ByteBuffer) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any])
    }

    @Test("chat prompt tokens equal transformers' apply_chat_template ids; usage and finish_reason are real")
    func chatUsage() async throws {
        let expected = try Self.expected()
        let (app, runtime) = try Self.app()
        defer { runtime.scheduler.stop() }
        try await app.test(.router) { client in
            let body: [String: Any] = ["model": "tiny", "messages": expected.messages, "max_tokens": 5, "temperature": 0, "ignore_eos": true]
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try Self.json(body)) { response in
                #expect(response.status == .ok)
                let object = try Self.object(response.body)
                let usage = try #require(object["usage"] as? [String: Int])
                #expect(usage["prompt_tokens"] == expected.chatPromptIDs.count)
                #expect(usage["completion_tokens"] == 5)
                #expect(usage["total_tokens"] == expected.chatPromptIDs.count + 5)
                let choice = try #require((object["choices"] as? [[String: Any]])?.first)
                #expect(choice["finish_reason"] as? String == "length")
                #expect(object["object"] as? String == "chat.completion")
            }
        }
    }

    @Test(
        "greedy completion equals transformers' greedy continuation; streaming gives the same text",
        arguments: ["qwen2-tiny"] + Fixtures.mixtureOfExperts)
    func greedyAndStreaming(name: String) async throws {
        let expected = try Self.expected(name)
        let (app, runtime) = try Self.app(name)
        defer { runtime.scheduler.stop() }
        let steps = 32
        let wanted = try runtime.tokenizer.decode(expected.greedyIDs.prefix(steps), skipSpecialTokens: true)
        try await app.test(.router) { client in
            let body: [String: Any] = [
                "prompt": expected.promptIDs, "max_tokens": steps, "temperature": 0, "repetition_penalty": 1, "ignore_eos": true,
            ]
            var plain = ""
            try await client.execute(uri: "/v1/completions", method: .post, body: try Self.json(body)) { response in
                let object = try Self.object(response.body)
                let choice = try #require((object["choices"] as? [[String: Any]])?.first)
                plain = try #require(choice["text"] as? String)
                #expect((object["usage"] as? [String: Int])?["completion_tokens"] == steps)
            }
            #expect(plain == wanted)

            var streamed = ["stream": true] as [String: Any]
            streamed.merge(body) { $1 }
            try await client.execute(uri: "/v1/completions", method: .post, body: try Self.json(streamed)) { response in
                #expect(response.headers[.contentType] == "text/event-stream")
                let text = String(buffer: response.body)
                let events = text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
                #expect(events.last == "data: [DONE]")
                var joined = ""
                var finish: String?
                for event in events.dropLast() {
                    let object = try #require(try JSONSerialization.jsonObject(with: Data(event.dropFirst(6).utf8)) as? [String: Any])
                    let choice = try #require((object["choices"] as? [[String: Any]])?.first)
                    joined += choice["text"] as? String ?? ""
                    if let reason = choice["finish_reason"] as? String { finish = reason }
                }
                #expect(joined == wanted)
                #expect(finish == "length")
            }
        }
    }

    @Test("a stop string ends the text before it with finish_reason stop")
    func stopString() async throws {
        let expected = try Self.expected()
        let (app, runtime) = try Self.app()
        defer { runtime.scheduler.stop() }
        let full = try runtime.tokenizer.decode(expected.greedyIDs.prefix(32), skipSpecialTokens: true)
        // A stop string from the middle of the greedy text: everything before its first occurrence comes back.
        let characters = Array(full)
        let stop = String(characters[characters.count / 2..<min(characters.count, characters.count / 2 + 2)])
        let before = String(full[..<full.range(of: stop)!.lowerBound])
        try await app.test(.router) { client in
            let body: [String: Any] = ["prompt": expected.promptIDs, "max_tokens": 32, "temperature": 0, "ignore_eos": true, "stop": [stop]]
            try await client.execute(uri: "/v1/completions", method: .post, body: try Self.json(body)) { response in
                let choice = try #require((try Self.object(response.body)["choices"] as? [[String: Any]])?.first)
                #expect(choice["text"] as? String == before)
                #expect(choice["finish_reason"] as? String == "stop")
            }
        }
    }

    @Test("requests that cannot be served get OpenAI-style 400s")
    func badRequests() async throws {
        let (app, runtime) = try Self.app()
        defer { runtime.scheduler.stop() }
        try await app.test(.router) { client in
            let cases: [([String: Any], String)] = [
                (["prompt": "hi", "max_tokens": 100_000], "maximum context length is 512 tokens"),
                (["prompt": Array(repeating: 5, count: 600), "max_tokens": 1], "maximum context length is 512 tokens"),
                (["prompt": "hi", "model": "other"], "does not exist"),
                (["prompt": "hi", "n": 2], "only n=1"),
                (["prompt": "hi", "temperature": -1], "temperature"),
            ]
            for (body, message) in cases {
                try await client.execute(uri: "/v1/completions", method: .post, body: try Self.json(body)) { response in
                    #expect(response.status == .badRequest, "\(body)")
                    let error = try #require(try Self.object(response.body)["error"] as? [String: Any])
                    #expect((error["message"] as? String)?.contains(message) == true, "\(error)")
                }
            }
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: "{nope")) { response in
                #expect(response.status == .badRequest)
            }
        }
    }

    @Test("bodies nested past 64 levels get a 400 and bodies over 32 MiB a 413, each naming its limit; the server goes on")
    func bodyLimits() async throws {
        let (app, runtime) = try Self.app()
        defer { runtime.scheduler.stop() }
        try await app.test(.router) { client in
            let deep = String(repeating: "[", count: 200_000) + String(repeating: "]", count: 200_000)
            let messages =
                #"{"model": "tiny", "max_tokens": 1, "messages": [{"role": "user", "content": "#
                + String(repeating: "[", count: 64) + String(repeating: "]", count: 64) + "}]}"
            for (path, body) in [("/v1/chat/completions", deep), ("/v1/completions", deep), ("/v1/chat/completions", messages)] {
                try await client.execute(uri: path, method: .post, body: ByteBuffer(string: body)) { response in
                    #expect(response.status == .badRequest, "\(path)")
                    let error = try #require(try Self.object(response.body)["error"] as? [String: Any])
                    #expect((error["message"] as? String)?.contains("limit of 64 levels") == true, "\(path): \(error)")
                }
            }
            let large = ByteBuffer(repeating: UInt8(ascii: " "), count: (32 << 20) + 1)
            try await client.execute(uri: "/v1/completions", method: .post, body: large) { response in
                #expect(response.status == .contentTooLarge)
                let error = try #require(try Self.object(response.body)["error"] as? [String: Any])
                #expect((error["message"] as? String)?.contains("limit of 32 MiB") == true, "\(error)")
            }
            try await client.execute(uri: "/health", method: .get) { response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test("numbers at the edges of their types are answered, never trapped on (the server is compiled checked)")
    func numberEdges() async throws {
        let (app, runtime) = try Self.app()
        defer { runtime.scheduler.stop() }
        try await app.test(.router) { client in
            let cases: [(String, HTTPResponse.Status)] = [
                (#"{"prompt": "hi", "max_tokens": 9223372036854775807}"#, .badRequest),
                (#"{"prompt": "hi", "max_tokens": 1e999}"#, .badRequest),
                (#"{"prompt": "hi", "max_tokens": -0}"#, .badRequest),
                (#"{"prompt": [9223372036854775807], "max_tokens": 1}"#, .badRequest),
                (#"{"prompt": "hi", "max_tokens": 1, "temperature": -0, "stop_token_ids": [1099511627776, -1]}"#, .ok),
            ]
            for (body, status) in cases {
                try await client.execute(uri: "/v1/completions", method: .post, body: ByteBuffer(string: body)) { response in
                    #expect(response.status == status, "\(body): \(String(buffer: response.body))")
                }
            }
        }
    }

    @Test("concurrent requests are batched and each gets exactly what it would get alone")
    func concurrentBatching() async throws {
        let expected = try Self.expected()
        let (app, runtime) = try Self.app()
        defer { runtime.scheduler.stop() }
        let prompts: [[Int]] = [expected.promptIDs, Array(expected.promptIDs.prefix(10)), Array(expected.promptIDs.suffix(7))]
        try await app.test(.router) { client in
            func complete(_ prompt: [Int]) async throws -> String {
                let body: [String: Any] = ["prompt": prompt, "max_tokens": 12, "temperature": 0, "ignore_eos": true]
                return try await client.execute(uri: "/v1/completions", method: .post, body: try Self.json(body)) { response in
                    let choice = try #require((try Self.object(response.body)["choices"] as? [[String: Any]])?.first)
                    return try #require(choice["text"] as? String)
                }
            }
            var alone: [String] = []
            for prompt in prompts { alone.append(try await complete(prompt)) }
            let together = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for (index, prompt) in prompts.enumerated() { group.addTask { (index, try await complete(prompt)) } }
                var results = [String](repeating: "", count: prompts.count)
                for try await (index, text) in group { results[index] = text }
                return results
            }
            #expect(together == alone)
        }
    }
}
