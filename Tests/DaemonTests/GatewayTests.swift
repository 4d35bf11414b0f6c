import FakeHub
import Foundation
import ModeldAPI
import Testing

@testable import Daemon

/// The OpenAI gateway routing between runs of one model, against a real daemon and fake vLLM engines.
@Suite("Gateway routing")
struct GatewayTests {
    @Test("requests for a model with two runs are shared by outstanding requests; each engine gets its own served name")
    func leastBusy() async throws {
        let fakeEngine = productsDirectory.appending(path: "fake-engine").path
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/tiny", commits: [FakeCommit(files: [FakeFile("config.json", "{}")])])
            let requestLog = FileManager.default.temporaryDirectory.appending(path: "fake-requests-\(UUID().uuidString).log").path
            defer { try? FileManager.default.removeItem(atPath: requestLog) }
            // Each reply takes 2 s, so the four requests below are all in flight at once.
            let daemon = try await DaemonProcess(extraEnvironment: [
                "HF_ENDPOINT": hub.endpoint, "MODELD_VLLM_COMMAND": fakeEngine, "FAKE_ENGINE_REQUEST_LOG": requestLog,
                "FAKE_ENGINE_REPLY_DELAY": "2",
            ])
            do {
                #expect(try await daemon.modelctl(["pull", "acme/tiny"]).status == 0)
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
            } catch {
                try await daemon.stop()
                throw error
            }
            try await daemon.stop()
        }
    }
}
