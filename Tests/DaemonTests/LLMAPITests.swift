import FakeHub
import Foundation
import ModeldAPI
import ModeldClient
import Testing

@testable import Daemon

/// The LLM API (`/api/v1/llm/*`) against a real daemon and real engines.
@Suite("LLM API")
struct LLMAPITests {
    /// An HTTP reply as curl saw it.
    struct Reply {
        var status: Int
        var body: String
        /// The envelope's `data` object.
        var data: [String: Any] { ((try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any])?["data"] as? [String: Any] ?? [:] }
        var message: String { ((try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any])?["msg"] as? String ?? body }
        /// NDJSON lines, decoded.
        var events: [[String: Any]] {
            body.split(separator: "\n").compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
        }
    }

    /// POSTs a JSON body to the daemon's TCP port with curl.
    static func post(_ daemon: DaemonProcess, _ path: String, _ body: String, key: String? = nil) async throws -> Reply {
        var arguments = [
            "-s", "-N", "-o", "/dev/stdout", "-w", "\n%{http_code}", "-H", "Content-Type: application/json", "--data-binary", body,
            "http://127.0.0.1:\(daemon.port)\(path)",
        ]
        if let key { arguments += ["-H", "Authorization: Bearer \(key)"] }
        let result = try await runProcess(URL(filePath: "/usr/bin/curl"), arguments)
        var lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let status = Int(lines.popLast() ?? "") ?? 0
        return Reply(status: status, body: lines.joined(separator: "\n"))
    }

    static func json(_ object: [String: Any]) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
    }

    /// JSON text with sorted keys, to compare values whatever their key order.
    static func canonical(_ value: Any) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed]), as: UTF8.self)
    }

    static func usage(_ data: [String: Any]) -> [String: Int] { data["usage"] as? [String: Int] ?? [:] }

    @Test("generate and chat on the built-in engine, by model and by run_id, plain and streamed; count-tokens agrees with the engine")
    func builtinEngine() async throws {
        let files = try TinyQwen2.hubFiles()
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/qwen2-tiny", commits: [FakeCommit(files: files)])
            hub.addRepo("acme/no-tokenizer", commits: [FakeCommit(files: [FakeFile("config.json", "{}")])])
            let daemon = try await DaemonProcess(extraEnvironment: ["HF_ENDPOINT": hub.endpoint])
            do {
                for repo in ["acme/qwen2-tiny", "acme/no-tokenizer"] {
                    let pulled = try await daemon.modelctl(["pull", repo])
                    #expect(pulled.status == 0, "\(pulled.stderr)")
                }

                // count-tokens needs no engine: the pulled model's own tokenizer.json.
                let counted = try await Self.post(
                    daemon, "/api/v1/llm/count-tokens", #"{"model": "acme/qwen2-tiny", "text": "Hello world, hello tokens"}"#)
                #expect(counted.status == 200, "\(counted.body)")
                let countedTokens = try #require(counted.data["tokens"] as? Int)
                #expect(countedTokens > 0, "\(counted.body)")
                let noTokenizer = try await Self.post(daemon, "/api/v1/llm/count-tokens", #"{"model": "acme/no-tokenizer", "text": "x"}"#)
                #expect(noTokenizer.status == 400 && noTokenizer.message.contains("tokenizer.json"), "\(noTokenizer.body)")
                for unknown in ["nosuch:1b", "acme/not-pulled"] {
                    let reply = try await Self.post(daemon, "/api/v1/llm/count-tokens", #"{"model": "\#(unknown)", "text": "x"}"#)
                    #expect(reply.status == 404, "\(unknown): \(reply.body)")
                }

                let started = try await daemon.modelctl(["start", "acme/qwen2-tiny", "--engine", "builtin", "--name", "tiny", "--wait", "--json"])
                #expect(started.status == 0, "\(started.stderr)\nmodeld log:\n\(daemon.log)")
                let run = try WireJSON.decoder().decode(RunSummary.self, from: Data(started.stdout.utf8))

                // generate by model (the run's name) and by run_id: the same greedy text, exact usage.
                let ask: [String: Any] = ["prompt": "Hello world, hello tokens", "max_tokens": 4, "ignore_eos": true, "temperature": 0]
                let byModel = try await Self.post(daemon, "/api/v1/llm/generate", try Self.json(ask.merging(["model": "tiny"]) { $1 }))
                #expect(byModel.status == 200, "\(byModel.body)")
                #expect(byModel.data["run_id"] as? String == run.runID && byModel.data["model"] as? String == "acme/qwen2-tiny")
                #expect(byModel.data["finish_reason"] as? String == "length")
                #expect(Self.usage(byModel.data)["completion_tokens"] == 4, "\(byModel.body)")
                #expect(Self.usage(byModel.data)["prompt_tokens"] == countedTokens, "count-tokens and the engine disagree: \(byModel.body)")
                let text = try #require(byModel.data["text"] as? String)
                let byRun = try await Self.post(daemon, "/api/v1/llm/generate", try Self.json(ask.merging(["run_id": run.runID]) { $1 }))
                #expect(byRun.status == 200 && byRun.data["text"] as? String == text, "\(byRun.body)")

                // Streamed: delta lines that add up to the same text, then one done line with the usage.
                let streamed = try await Self.post(
                    daemon, "/api/v1/llm/generate", try Self.json(ask.merging(["model": "tiny", "stream": true]) { $1 }))
                #expect(streamed.status == 200, "\(streamed.body)")
                let events = streamed.events
                #expect(events.dropLast().compactMap { $0["delta"] as? String }.joined() == text, "\(streamed.body)")
                let done = try #require(events.last)
                #expect(
                    done["done"] as? Bool == true && done["finish_reason"] as? String == "length" && done["run_id"] as? String == run.runID,
                    "\(streamed.body)")
                #expect(Self.usage(done)["completion_tokens"] == 4)

                // chat by the model's repository id; its prompt_tokens equal count-tokens of the same messages.
                let messages: [[String: String]] = [["role": "system", "content": "Be brief."], ["role": "user", "content": "Hello"]]
                let chatAsk: [String: Any] = ["messages": messages, "max_tokens": 3, "ignore_eos": true, "temperature": 0]
                let chat = try await Self.post(daemon, "/api/v1/llm/chat", try Self.json(chatAsk.merging(["model": "acme/qwen2-tiny"]) { $1 }))
                #expect(chat.status == 200, "\(chat.body)")
                let message = try #require(chat.data["message"] as? [String: String])
                #expect(message["role"] == "assistant")
                #expect(Self.usage(chat.data)["completion_tokens"] == 3, "\(chat.body)")
                let chatCount = try await Self.post(daemon, "/api/v1/llm/count-tokens", try Self.json(["model": "tiny", "messages": messages]))
                #expect(chatCount.status == 200 && chatCount.data["run_id"] as? String == run.runID, "\(chatCount.body)")
                #expect(Self.usage(chat.data)["prompt_tokens"] == chatCount.data["tokens"] as? Int, "\(chat.body)\n\(chatCount.body)")
                let chatStreamed = try await Self.post(
                    daemon, "/api/v1/llm/chat", try Self.json(chatAsk.merging(["run_id": "tiny", "stream": true]) { $1 }))
                let chatEvents = chatStreamed.events
                #expect(chatEvents.dropLast().compactMap { $0["delta"] as? String }.joined() == message["content"], "\(chatStreamed.body)")
                #expect(chatEvents.last?["done"] as? Bool == true && Self.usage(chatEvents.last ?? [:])["completion_tokens"] == 3)

                // The built-in engine has no constrained decoding: a 400 that says which engines have it.
                let structured = try await Self.post(
                    daemon, "/api/v1/llm/structured-generate", #"{"model": "tiny", "prompt": "x", "schema": {"type": "object"}}"#)
                #expect(structured.status == 400, "\(structured.body)")
                #expect(structured.message.contains("built-in engine") && structured.message.contains("vLLM"), "\(structured.body)")

                // Bad requests lose nothing and say what is wrong.
                let cases: [(body: String, status: Int, says: String)] = [
                    ("{", 400, "malformed"),
                    (#"{"model": "tiny", "prompt": 5}"#, 400, "prompt"),
                    (#"{"prompt": "x"}"#, 400, "run_id"),
                    (#"{"model": "tiny", "run_id": "tiny", "prompt": "x"}"#, 400, "not both"),
                    (#"{"run_id": "nosuch", "prompt": "x"}"#, 404, "nosuch"),
                    (#"{"model": "nosuch:1b", "prompt": "x"}"#, 404, "nosuch:1b"),
                    (#"{"model": "tiny", "prompt": "x", "max_tokens": 0}"#, 400, "max_tokens"),
                ]
                for item in cases {
                    let reply = try await Self.post(daemon, "/api/v1/llm/generate", item.body)
                    #expect(reply.status == item.status && reply.message.contains(item.says), "\(item.body): \(reply.body)")
                }

                // An inference key may use the LLM API (it is inference, not administration).
                let created = try await daemon.modelctl(["keys", "create", "--name", "app"])
                let key = String(created.stdout.split(separator: "\n").last ?? "")
                let counting = #"{"model": "tiny", "text": "Hello"}"#
                #expect(try await Self.post(daemon, "/api/v1/llm/count-tokens", counting).status == 401)
                let withKey = try await Self.post(daemon, "/api/v1/llm/count-tokens", counting, key: key)
                #expect(withKey.status == 200, "\(withKey.body)")

                // A stopped run: by run_id a 409; its tokenizer still counts.
                #expect(try await daemon.modelctl(["stop", "tiny"]).status == 0)
                let stopped = try await Self.post(daemon, "/api/v1/llm/generate", #"{"run_id": "tiny", "prompt": "x"}"#, key: key)
                #expect(stopped.status == 409 && stopped.message.contains("stopped"), "\(stopped.body)")
                let afterStop = try await Self.post(
                    daemon, "/api/v1/llm/count-tokens", #"{"run_id": "tiny", "text": "Hello world, hello tokens"}"#, key: key)
                #expect(afterStop.status == 200 && afterStop.data["tokens"] as? Int == countedTokens, "\(afterStop.body)")
            } catch {
                try await daemon.stop()
                throw error
            }
            try await daemon.stop()
        }
    }

    @Test("structured-generate passes the schema to vLLM as response_format, key order kept, and returns the parsed JSON")
    func structuredOnVLLM() async throws {
        try await withFakeVLLMDaemon { daemon, requestLog in
            let started = try await daemon.modelctl(["start", "acme/tiny", "--engine", "vllm", "--name", "tiny-vllm", "--wait", "--json"])
            #expect(started.status == 0, "\(started.stderr)")
            let run = try WireJSON.decoder().decode(RunSummary.self, from: Data(started.stdout.utf8))

            // Properties deliberately out of alphabetical order: constrained decoders emit them in schema order.
            let schema =
                #"{"type": "object", "properties": {"zeta": {"type": "string"}, "alpha": {"type": "integer"}, "mid": {"type": "boolean", "description": "ünïcode"}}, "required": ["zeta", "alpha", "mid"]}"#
            let body =
                #"{"model": "tiny-vllm", "prompt": "Describe a cat", "schema": \#(schema), "schema_name": "cat", "temperature": 0, "guided_decoding_backend": "xgrammar"}"#
            let reply = try await Self.post(daemon, "/api/v1/llm/structured-generate", body)
            #expect(reply.status == 200, "\(reply.body)\n\(daemon.log)")
            let json = try #require(reply.data["json"] as? [String: Any], "\(reply.body)")
            #expect(json["zeta"] as? String == "text" && json["alpha"] as? Int == 7 && json["mid"] as? Bool == true, "\(reply.body)")
            #expect(reply.data["json_error"] is NSNull && reply.data["run_id"] as? String == run.runID)
            #expect(Self.usage(reply.data)["prompt_tokens"] == 3, "\(reply.body)")

            // What the engine received: OpenAI's response_format with the schema exactly as sent.
            let lines = try String(contentsOfFile: requestLog, encoding: .utf8).split(separator: "\n")
            let received = try #require(lines.last.map(String.init))
            let request = try #require(try JSONSerialization.jsonObject(with: Data(received.utf8)) as? [String: Any])
            let format = try #require(request["response_format"] as? [String: Any], "\(received)")
            let jsonSchema = try #require(format["json_schema"] as? [String: Any], "\(received)")
            #expect(format["type"] as? String == "json_schema" && jsonSchema["name"] as? String == "cat")
            let sent = try JSONSerialization.jsonObject(with: Data(schema.utf8))
            #expect(try Self.canonical(try #require(jsonSchema["schema"])) == Self.canonical(sent), "\(received)")
            #expect(request["model"] as? String == "tiny-vllm" && request["guided_decoding_backend"] as? String == "xgrammar", "\(received)")
            #expect((request["messages"] as? [[String: String]]) == [["role": "user", "content": "Describe a cat"]], "\(received)")
            #expect(request["schema"] == nil && request["prompt"] == nil && request["schema_name"] == nil, "\(received)")
            let order = ["\"zeta\"", "\"alpha\"", "\"mid\""].map { received.range(of: $0)?.lowerBound }
            #expect(order.allSatisfy { $0 != nil } && order == order.sorted { $0! < $1! }, "property order lost: \(received)")

            // Output cut off by max_tokens is not JSON: the raw text, json null and why.
            let cut = try await Self.post(
                daemon, "/api/v1/llm/structured-generate",
                #"{"run_id": "\#(run.runID)", "messages": [{"role": "user", "content": "A cat"}], "schema": \#(schema), "max_tokens": 2}"#)
            #expect(cut.status == 200, "\(cut.body)")
            #expect(cut.data["json"] is NSNull && (cut.data["json_error"] as? String)?.contains("max_tokens") == true, "\(cut.body)")
            #expect(cut.data["finish_reason"] as? String == "length" && (cut.data["text"] as? String)?.isEmpty == false)

            // chat on the same engine, by run name.
            let chat = try await Self.post(
                daemon, "/api/v1/llm/chat", #"{"run_id": "tiny-vllm", "messages": [{"role": "user", "content": "Hi there"}]}"#)
            #expect(chat.status == 200 && (chat.data["message"] as? [String: String])?["content"] == "A fake reply.", "\(chat.body)")

            // The OpenAI gateway passes a body through byte for byte but for model, which becomes the served name:
            // numbers a decode and re-encode would rewrite, unknown fields, nested "model" keys and escapes stay.
            let original =
                #"{"messages":[{"role":"user","content":"Hi \"there\" \u00e9"}],"temperature":0.1,"#
                + #""seed":12345678901234567890,"ignore_eos":true,"extra":{"model":"inner","x":[1e-7,null]},"model":"TINY-VLLM"}"#
            let relayed = try await Self.post(daemon, "/v1/chat/completions", original)
            #expect(relayed.status == 200 && relayed.body.contains("A fake reply."), "\(relayed.body)")
            let forwarded = try #require(try String(contentsOfFile: requestLog, encoding: .utf8).split(separator: "\n").last.map(String.init))
            let members = try #require(JSONMembers(Array(forwarded.utf8)), "\(forwarded)")
            #expect(members.string("model") == run.servedName, "\(forwarded)")
            #expect(String(decoding: members.replacing("model", with: JSONMembers.encode("TINY-VLLM")), as: UTF8.self) == original, "\(forwarded)")

            let bad: [(body: String, says: String)] = [
                (#"{"model": "tiny-vllm", "prompt": "x"}"#, "schema"),
                (#"{"model": "tiny-vllm", "prompt": "x", "schema": "object"}"#, "schema"),
                (#"{"model": "tiny-vllm", "prompt": "x", "messages": [], "schema": {}}"#, "prompt or messages"),
                (#"{"model": "tiny-vllm", "prompt": "x", "schema": {}, "stream": true}"#, "stream"),
            ]
            for item in bad {
                let reply = try await Self.post(daemon, "/api/v1/llm/structured-generate", item.body)
                #expect(reply.status == 400 && reply.message.contains(item.says), "\(item.body): \(reply.body)")
            }
        }
    }
}
