import FakeHub
import Foundation
import ModeldAPI
import Testing
import Transfer

@testable import Catalog

@Suite("Hub connections: unresolvable hosts, private CAs")
struct HubConnectionTests {
    /// `.invalid` never resolves (RFC 6761): the lookup fails at the local resolver and nothing else leaves the
    /// machine.
    static let unresolvable = "http://nonexistent.invalid"

    @Test("a failed DNS lookup is reported as one, and a reused handle fails the same way again")
    func reusedHandleAfterDNSFailure() throws {
        let download = try CurlDownload()
        for _ in 0..<3 {
            let error = try #require(throws: CurlError.self) {
                _ = try download.perform(DownloadRequest(url: Self.unresolvable + "/api/models/a/b")) { _ in .receive } onData: { _ in true }
            }
            #expect(error.message == "cannot resolve host nonexistent.invalid (DNS lookup failed)")
            #expect(error.isTransient)
        }
    }

    @Test("a hub whose host does not resolve: retried like a refused connection, then one message naming the host")
    func unresolvableHub() async throws {
        try await FakeHub.withRunning { hub in
            hub.addModelScopeRepo("acme/tiny", commits: [tinyCommit()])
            let logs = LogCollector()
            let policy = RetryPolicy(maxAttempts: 3, delays: [.milliseconds(10)])
            try await withPullService(hub: hub, logs: logs, configure: {
                $0.huggingFace = HuggingFaceSettings(endpoint: Self.unresolvable)
                $0.retry = policy
            }) { harness in
                let error = try #require(await harness.pullError("a/b"))
                #expect(error.code == .network)
                #expect(error.message.contains("cannot resolve host nonexistent.invalid (DNS lookup failed)"), "\(error.message)")
                #expect(error.message.contains("after 3 tries"), "\(error.message)")
                #expect(!error.message.contains("bad argument"), "\(error.message)")
                let retries = logs.all.filter { $0.contains("retrying a hub request") }
                #expect(retries.count == policy.maxAttempts - 1, "\(logs.all)")
                #expect(retries.allSatisfy { $0.contains("cannot resolve host nonexistent.invalid") }, "\(retries)")
                // The handles that failed the lookups serve the next pull (another hub, same pool).
                try await harness.pull("acme/tiny", source: .modelscope)
            }
        }
    }
}
