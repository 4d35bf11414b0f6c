import Catalog
import Foundation
import GRDB
import Hummingbird
import HummingbirdTesting
import ModelStore
import ModeldAPI
import ModeldClient
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

    @Test("domain errors reply with their own status and message, in the shape of the route that failed")
    func errorShapes() async throws {
        let daemon = try await TestDaemon()
        try await daemon.serve { client in
            func envelope(_ uri: String, _ method: HTTPRequest.Method, _ body: String? = nil) async throws -> (Int, String) {
                try await client.execute(uri: uri, method: method, body: body.map { ByteBuffer(string: $0) }) { response in
                    let envelope = try WireJSON.decoder().decode(Envelope<EmptyPayload>.self, from: Data(response.body.readableBytesView))
                    #expect(envelope.code == response.status.code && envelope.data == nil)
                    return (envelope.code, envelope.msg)
                }
            }
            // StoreError, LaunchError and ModelRefError, none caught by their controllers.
            #expect(try await envelope("/api/v1/keys/nosuch/revoke", .post) == (404, "no API key nosuch"))
            let run = try await envelope("/api/v1/models/running/nosuch", .get)
            #expect(run.0 == 404 && run.1.contains("nosuch"), "\(run)")
            let size = #"{"model": "qwen2.5:70b"}"#
            let start = try await envelope("/api/v1/models/start", .post, size)
            #expect(start.0 == 400 && start.1.hasPrefix("model \"qwen2.5:70b\" has no size"), "\(start)")
            // A run across hosts names its hosts and its head (docs/multi-node.md).
            let stray = try await envelope("/api/v1/models/start", .post, #"{"model": "acme/tiny", "node_rank": 1}"#)
            #expect(stray.0 == 400 && stray.1.hasPrefix("node_rank, master_addr and master_port belong to a run across hosts"), "\(stray)")
            let headless = try await envelope("/api/v1/models/start", .post, #"{"model": "acme/tiny", "engine": "vllm", "nodes": 2}"#)
            #expect(headless.0 == 400 && headless.1.hasPrefix("a run across 2 hosts needs master_addr"), "\(headless)")
            // The resolve route alone reports an unknown size as not found.
            #expect(try await envelope("/api/v1/models/resolve", .post, size).0 == 404)

            // Under /v1/, OpenAI's shape: an on-demand miss (OnDemandError), a bad body, no such route.
            func openAI(_ uri: String, _ method: HTTPRequest.Method, _ body: String? = nil) async throws -> (Int, [String: Any]) {
                try await client.execute(uri: uri, method: method, body: body.map { ByteBuffer(string: $0) }) { response in
                    #expect(response.headers[.contentType] == "application/json")
                    let object = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                    let error = try #require(object?["error"] as? [String: Any], "\(String(buffer: response.body))")
                    #expect(error["code"] as? Int == response.status.code && error["message"] is String)
                    return (response.status.code, error)
                }
            }
            let miss = try await openAI("/v1/chat/completions", .post, #"{"model": "nosuch:1b", "messages": []}"#)
            #expect(miss.0 == 404 && miss.1["type"] as? String == "NotFoundError" && miss.1["param"] as? String == "model", "\(miss)")
            #expect((miss.1["message"] as? String)?.contains("not running here and not pulled") == true)
            let bad = try await openAI("/v1/completions", .post, "[1]")
            #expect(bad.0 == 400 && bad.1["type"] as? String == "BadRequestError" && bad.1["param"] is NSNull, "\(bad)")
            #expect(try await openAI("/v1/nothing-here", .get).1["message"] as? String == "no route for GET /v1/nothing-here")
        }
        let ollama = ErrorShape.ollama.body(APIError(.notFound, "model \"x\" not found"), requestID: "r")
        #expect(String(buffer: ollama) == #"{"error":"model \"x\" not found"}"#)
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
