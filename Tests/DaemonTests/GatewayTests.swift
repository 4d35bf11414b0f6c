import Foundation
import ModeldAPI
import Testing

@testable import Daemon

/// The OpenAI gateway routing between runs of one model, against a real daemon and fake vLLM engines.
@Suite("Gateway routing")
struct GatewayTests {
    @Test("requests for a model with two runs are shared by outstanding requests; streams relay as they come; a client that leaves cancels the engine's request")
    func leastBusy() async throws {
        // Each reply takes 2 s, so the four requests below are all in flight at once.
        try await withFakeVLLMDaemon(environment: ["FAKE_ENGINE_REPLY_DELAY": "2"]) { daemon, requestLog in
            for name in ["first", "second"] {
                let started = try await daemon.modelctl(["start", "acme/tiny", "--engine", "vllm", "--name", name, "--wait"])
                #expect(started.status == 0, "\(started.stderr)")
            }
            let body = #"{"model": "acme/tiny", "messages": [{"role": "user", "content": "Hi"}]}"#
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<4 {
                    group.addTask { try await LLMAPITests.post(daemon, "/v1/chat/completions", body).status }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses == [200, 200, 200, 200], "\(daemon.log)")
            let models = try String(contentsOfFile: requestLog, encoding: .utf8).split(separator: "\n").compactMap {
                JSONMembers(Array($0.utf8))?.string("model")
            }
            #expect(models.sorted() == ["first", "first", "second", "second"], "\(models)")

            // A streamed reply is relayed as it comes; a client that goes away cancels the engine's request
            // (the fake engine's 30 chunks would take 3 s; it notices the close at its next write).
            let streamBody = #"{"model": "first", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}"#
            let streamed = try await runProcess(
                URL(filePath: "/usr/bin/curl"),
                ["-s", "-N", "--max-time", "1", "-H", "Content-Type: application/json", "--data-binary", streamBody,
                 "http://127.0.0.1:\(daemon.port)/v1/chat/completions"])
            #expect(streamed.status == 28, "curl was not cut off by --max-time: \(streamed.stdout)")
            let ticks = streamed.stdout.components(separatedBy: "tick").count - 1
            #expect(ticks >= 3 && ticks < 30, "\(ticks) chunks arrived within 1 s: \(streamed.stdout)")
            var cancelled = false
            for _ in 0..<40 where !cancelled {
                try await Task.sleep(for: .milliseconds(100))
                cancelled = try String(contentsOfFile: requestLog, encoding: .utf8).contains("stream cancelled by the client")
            }
            #expect(cancelled, "the engine kept streaming after the client left; modeld log:\n\(daemon.log)")
        }
    }
}
