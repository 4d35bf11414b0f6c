import Catalog
import Foundation
import GRDB
import Hummingbird
import HummingbirdTesting
import ModeldAPI
import Testing

@testable import Daemon

@Suite("Management API on a live server")
struct ManagementAPITests {
    @Test("GET /health answers ok with the version")
    func health() async throws {
        let daemon = try await TestDaemon()
        try await daemon.serve { client in
            try await client.execute(uri: "/health", method: .get) { response in
                #expect(response.status == .ok)
                let health = try JSONDecoder().decode(HealthInfo.self, from: Data(response.body.readableBytesView))
                #expect(health == HealthInfo(status: "ok", version: modeldVersion))
            }
        }
    }

    @Test("GET /api/v1/models returns the catalog in the envelope, with local state")
    func models() async throws {
        let daemon = try await TestDaemon()
        // One ready local version of a catalog model.
        let model = try await daemon.context.store.model(source: "huggingface", repo: "Qwen/Qwen2.5-0.5B-Instruct")
        let commit = String(repeating: "c", count: 40)
        try await daemon.context.store.write { db in
            var version = VersionRecord(
                modelID: model.id!, requestedRevision: "main", commit: commit, state: .ready, path: "/x", totalBytes: 1234)
            try version.insert(db)
        }
        try await daemon.serve { client in
            try await client.execute(uri: "/api/v1/models", method: .get) { response in
                #expect(response.status == .ok)
                let envelope = try WireJSON.decoder().decode(Envelope<[CatalogModelInfo]>.self, from: Data(response.body.readableBytesView))
                #expect(envelope.code == 200)
                #expect(envelope.msg == "success")
                #expect(!envelope.requestID.isEmpty)
                #expect(response.headers[.init("X-Request-Id")!] == envelope.requestID)
                let models = try #require(envelope.data)
                #expect(models.map(\.id) == daemon.context.catalog.entries.map(\.id))
                let qwen = try #require(models.first { $0.id == "qwen2.5" })
                let small = try #require(qwen.sizes.first { $0.size == "0.5b" })
                #expect(small.state == "ready")
                #expect(small.versions.map(\.commit) == [commit])
                #expect(small.versions.first?.sizeBytes == 1234)
                #expect(qwen.sizes.first { $0.size == "7b" }?.state == "not_pulled")
            }
            // The raw JSON uses the envelope's documented field names.
            try await client.execute(uri: "/api/v1/models", method: .get) { response in
                let object = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                #expect(Set(object?.keys.map { $0 } ?? []) == ["request_id", "code", "msg", "data"])
            }
        }
    }

    @Test("unknown routes and bad bodies get JSON envelopes with 404 and 400")
    func errors() async throws {
        let daemon = try await TestDaemon()
        try await daemon.serve { client in
            try await client.execute(uri: "/api/v1/nothing-here", method: .get) { response in
                #expect(response.status == .notFound)
                let envelope = try WireJSON.decoder().decode(Envelope<EmptyPayload>.self, from: Data(response.body.readableBytesView))
                #expect(envelope.code == 404)
                #expect(envelope.msg == "no route for GET /api/v1/nothing-here")
                #expect(envelope.data == nil)
            }
            for (body, expected) in [
                ("{not json", "malformed JSON body"),
                ("{}", "missing field \"model\""),
                (#"{"model": 5}"#, "field \"model\" must be a string"),
                (#"{"model": "qwen2.5:0.5b", "source": "github"}"#, "unknown source \"github\""),
            ] {
                try await client.execute(uri: "/api/v1/models/resolve", method: .post, body: ByteBuffer(string: body)) { response in
                    #expect(response.status == .badRequest, "body \(body)")
                    let envelope = try WireJSON.decoder().decode(Envelope<EmptyPayload>.self, from: Data(response.body.readableBytesView))
                    #expect(envelope.code == 400)
                    #expect(envelope.msg.hasPrefix(expected), "body \(body): \(envelope.msg)")
                }
            }
            try await client.execute(
                uri: "/api/v1/models/resolve", method: .post, body: ByteBuffer(string: #"{"model": "nosuch:1b"}"#)
            ) { response in
                #expect(response.status == .notFound)
            }
            try await client.execute(
                uri: "/api/v1/models/resolve", method: .post, body: ByteBuffer(string: #"{"model": "llama3.2:1b", "source": "modelscope"}"#)
            ) { response in
                let envelope = try WireJSON.decoder().decode(Envelope<ResolveResponse>.self, from: Data(response.body.readableBytesView))
                #expect(envelope.data?.repo == "LLM-Research/Llama-3.2-1B-Instruct")
                #expect(envelope.data?.catalogRef == "llama3.2:1b")
            }
        }
    }

    @Test("modelctl's libcurl client reads the live API")
    func clientAgainstLiveServer() async throws {
        let daemon = try await TestDaemon()
        try await daemon.serve { client in
            let port = client.port
            let api = try ModeldClient(endpoint: DaemonEndpoint(baseURL: "http://127.0.0.1:\(port)/"))
            #expect(try await api.health().status == "ok")
            let models = try await api.models()
            #expect(models.count == daemon.context.catalog.entries.count)
            let resolved: ResolveResponse = try await api.call("POST", "/api/v1/models/resolve", body: ResolveRequest(model: "qwen3:0.6b"))
            #expect(resolved.repo == "Qwen/Qwen3-0.6B")
            await #expect(throws: ClientError.self) {
                let _: ResolveResponse = try await api.call("POST", "/api/v1/models/resolve", body: ResolveRequest(model: "nope:1b"))
            }
        }
    }
}
