import Foundation
import Testing

@testable import Daemon

/// JSON nested past the limit (64 levels) sent to the real `modeld`, on every route family that reads a body:
/// each answers 400 naming the limit, and the daemon goes on serving.
@Suite("JSON limits")
struct JSONLimitsTests {
    /// 400 KB of arrays nested 200,000 deep: it used to end the daemon on a stack overflow.
    static let deep = String(repeating: "[", count: 200_000) + String(repeating: "]", count: 200_000)

    /// The message of an envelope (`msg`) or of an OpenAI error (`error.message`).
    static func message(_ reply: RawHTTP.Reply) -> String {
        let object = (try? JSONSerialization.jsonObject(with: Data(reply.body.utf8))) as? [String: Any]
        return object?["msg"] as? String ?? (object?["error"] as? [String: Any])?["message"] as? String ?? reply.body
    }

    /// POSTs `body` on a connection of its own and expects a 400 naming the limit, then `/health` answered.
    static func expectRefused(_ daemon: DaemonProcess, _ path: String, _ body: String) async throws {
        let replies = try await RawHTTP.exchange(port: daemon.port, [RawHTTP.post(path, body)], expecting: 1)
        let reply = try #require(replies.first, "\(path): no reply; modeld log:\n\(daemon.log)")
        #expect(reply.status == 400, "\(path): \(reply)")
        #expect(message(reply).contains("limit of 64 levels"), "\(path): \(reply)")
        let health = try await RawHTTP.exchange(port: daemon.port, ["GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"], expecting: 1)
        #expect(health.first?.status == 200, "after \(path): \(health); modeld log:\n\(daemon.log)")
    }

    @Test("a 200,000-deep body gets a 400 naming the limit on the LLM API, the management API, the gateway and its relay")
    func deepBodies() async throws {
        try await withFakeVLLMDaemon { daemon, requestLog in
            // The router's routes; with no ready run, the gateway's requests are the router's too.
            for path in [
                "/api/v1/llm/chat", "/api/v1/llm/generate", "/api/v1/llm/count-tokens", "/api/v1/llm/structured-generate",
                "/api/v1/models/pull", "/api/v1/models/start", "/api/v1/keys", "/v1/chat/completions", "/v1/completions",
            ] {
                try await Self.expectRefused(daemon, path, Self.deep)
            }

            // With a ready run, a request naming it reaches the relay below the router, which hands the deep
            // body to the router: the engine never sees it, and the relay goes on relaying.
            let started = try await daemon.modelctl(["start", "acme/tiny", "--engine", "vllm", "--name", "first", "--wait"])
            #expect(started.status == 0, "\(started.stderr)")
            try await Self.expectRefused(daemon, "/v1/chat/completions", #"{"model": "first", "messages": "# + Self.deep + "}")
            try await Self.expectRefused(daemon, "/api/v1/llm/chat", #"{"model": "first", "messages": "# + Self.deep + "}")
            // A schema within the limit that the daemon's wrapping (response_format.json_schema.schema) puts past it.
            let schema =
                #"{"model": "first", "prompt": "x", "schema": {"type": "object", "x": "#
                + String(repeating: "[", count: 62) + String(repeating: "]", count: 62) + "}}"
            try await Self.expectRefused(daemon, "/api/v1/llm/structured-generate", schema)
            let chat = #"{"model": "first", "messages": [{"role": "user", "content": "Hi"}]}"#
            let replies = try await RawHTTP.exchange(port: daemon.port, [RawHTTP.post("/v1/chat/completions", chat)], expecting: 1)
            #expect(replies.first?.status == 200, "\(replies)")
            let relayed = try String(contentsOfFile: requestLog, encoding: .utf8).split(separator: "\n")
            #expect(relayed.count == 1 && !relayed[0].contains("[[["), "\(relayed.map { $0.prefix(200) })")
        }
    }

    @Test("a body nested exactly 64 deep is read: the request goes on to its next check")
    func atLimit() async throws {
        let daemon = try await DaemonProcess()
        do {
            // An object around 63 arrays.
            let body =
                #"{"model": "acme/not-pulled", "text": "x", "extra": "#
                + String(repeating: "[", count: 63) + String(repeating: "]", count: 63) + "}"
            let replies = try await RawHTTP.exchange(port: daemon.port, [RawHTTP.post("/api/v1/llm/count-tokens", body)], expecting: 1)
            let reply = try #require(replies.first)
            #expect(reply.status == 404 && Self.message(reply).contains("not pulled"), "\(reply)")
        } catch {
            try await daemon.stop()
            throw error
        }
        try await daemon.stop()
    }
}
