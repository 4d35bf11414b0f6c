import Catalog
import Foundation
import GRDB
import Hummingbird
import HummingbirdTesting
import ModeldAPI
import Testing

@testable import Daemon

@Suite("OpenAPI document")
struct OpenAPITests {
    static func document() throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: OpenAPIDocument.json) as? [String: Any])
    }

    @Test("every route of the router is documented, and every documented route exists")
    func routesMatch() async throws {
        let daemon = try await TestDaemon()
        // Ollama's API (`/api/*` outside `/api/v1`) is Ollama's own, documented in docs/ollama-api.md.
        let routes = Set(buildRouter(daemon.context).routes.map { route in
            let path = "/" + route.path.description.split(separator: "/").map { segment in
                segment.hasPrefix(":") ? "{\(segment.dropFirst())}" : String(segment)
            }.joined(separator: "/")
            return "\(route.method.rawValue.lowercased()) \(path)"
        }).filter { !OllamaController.owns(String($0.split(separator: " ")[1])) }
        let paths = try #require(try Self.document()["paths"] as? [String: [String: Any]])
        var documented: Set<String> = []
        for (path, operations) in paths {
            for method in operations.keys { documented.insert("\(method) \(path)") }
        }
        // `{ref}/{name}` is the unencoded spelling of `{ref}` for repository ids (owner/name).
        let undocumented = routes.subtracting(documented).subtracting([
            "get /api/v1/models/{ref}/{name}", "get /api/v1/models/{ref}/{name}/export",
        ])
        #expect(undocumented.isEmpty, "routes missing from the OpenAPI document: \(undocumented.sorted())")
        let stale = documented.subtracting(routes)
        #expect(stale.isEmpty, "documented routes the router lacks: \(stale.sorted())")
    }

    @Test(
        "the document is valid OpenAPI 3.1 and live responses match their schemas",
        .enabled(if: pythonCanCheckOpenAPI()))
    func responsesMatchSchemas() async throws {
        let daemon = try await TestDaemon()
        let model = try await daemon.context.store.model(source: "huggingface", repo: "Qwen/Qwen2.5-0.5B-Instruct")
        try await daemon.context.store.write { db in
            var version = VersionRecord(
                modelID: model.id!, requestedRevision: "main", commit: String(repeating: "a", count: 40), state: .ready,
                path: "/data/x", totalBytes: 42, readyAt: Date())
            try version.insert(db)
        }
        // A pulled model whose snapshot is the tiny Qwen2 fixture, for a live count-tokens answer.
        let tiny = try await daemon.context.store.model(source: "huggingface", repo: "acme/qwen2-tiny")
        try await daemon.context.store.write { db in
            var version = VersionRecord(
                modelID: tiny.id!, requestedRevision: "main", commit: String(repeating: "b", count: 40), state: .ready,
                path: TinyQwen2.directory.path, totalBytes: 42, readyAt: Date())
            try version.insert(db)
        }
        let requests: [(method: HTTPRequest.Method, path: String, documented: String, body: String?, status: String)] = [
            (.get, "/health", "/health", nil, "200"),
            (.get, "/api/v1/models", "/api/v1/models", nil, "200"),
            (.get, "/api/v1/models/local", "/api/v1/models/local", nil, "200"),
            (.get, "/api/v1/models/running", "/api/v1/models/running", nil, "200"),
            (.get, "/api/v1/models/pulls", "/api/v1/models/pulls", nil, "200"),
            (.get, "/api/v1/status", "/api/v1/status", nil, "200"),
            (.get, "/api/v1/models/qwen2.5:0.5b", "/api/v1/models/{ref}", nil, "200"),
            (.get, "/api/v1/models/acme%2Fnot-in-catalog", "/api/v1/models/{ref}", nil, "200"),
            (.post, "/api/v1/models/resolve", "/api/v1/models/resolve", #"{"model": "qwen3:0.6b"}"#, "200"),
            (.post, "/api/v1/models/resolve", "/api/v1/models/resolve", #"{"model": 1}"#, "400"),
            (.get, "/api/v1/models/running/nosuch", "/api/v1/models/running/{id}", nil, "404"),
            (.post, "/api/v1/models/start", "/api/v1/models/start", #"{"model": "qwen3:0.6b", "engine": "vllm"}"#, "409"),
            (.post, "/api/v1/models/verify", "/api/v1/models/verify", #"{"model": "nosuch:1b"}"#, "404"),
            (.post, "/api/v1/llm/count-tokens", "/api/v1/llm/count-tokens", #"{"model": "acme/qwen2-tiny", "text": "Hello"}"#, "200"),
            (.post, "/api/v1/llm/count-tokens", "/api/v1/llm/count-tokens", #"{"model": "nosuch:1b", "text": "x"}"#, "404"),
            (.post, "/api/v1/llm/generate", "/api/v1/llm/generate", #"{"model": "x", "prompt": 5}"#, "400"),
            (.post, "/api/v1/llm/chat", "/api/v1/llm/chat", #"{"run_id": "nosuch", "messages": [{"role": "user", "content": "x"}]}"#, "404"),
            (.post, "/api/v1/llm/structured-generate", "/api/v1/llm/structured-generate", #"{"model": "x", "prompt": "x"}"#, "400"),
            (.get, "/api/v1/models/acme%2Fnone/export", "/api/v1/models/{ref}/export", nil, "404"),
            (.get, "/api/v1/models/Qwen%2FQwen2.5-0.5B-Instruct/export?format=rar", "/api/v1/models/{ref}/export", nil, "400"),
            (.post, "/api/v1/models/adopt", "/api/v1/models/adopt", #"{"path": "relative/dir", "kind": "dir"}"#, "400"),
            (.post, "/api/v1/models/import", "/api/v1/models/import", "not an archive", "400"),
        ]
        let collected = try await buildApplication(daemon.context, port: 0).test(.router) { client in
            var collected: [(path: String, method: String, status: String, data: Data)] = []
            for request in requests {
                let (status, data) = try await client.execute(
                    uri: request.path, method: request.method, body: request.body.map { ByteBuffer(string: $0) }
                ) { response in
                    (String(response.status.code), Data(response.body.readableBytesView))
                }
                #expect(status == request.status, "\(request.path): \(status)")
                collected.append((request.documented, request.method.rawValue.lowercased(), status, data))
            }
            try await client.execute(uri: "/docs", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("/openapi.json"))
            }
            return collected
        }
        let samples: [[String: Any]] = try collected.map { sample in
            [
                "path": sample.path, "method": sample.method, "status": sample.status, "content_type": "application/json",
                "body": try JSONSerialization.jsonObject(with: sample.data, options: .fragmentsAllowed),
            ]
        }
        let input = FileManager.default.temporaryDirectory.appending(path: "openapi-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: input) }
        let payload: [String: Any] = ["document": try Self.document(), "samples": samples]
        try JSONSerialization.data(withJSONObject: payload).write(to: input)
        let script = URL(filePath: #filePath).deletingLastPathComponent().appending(path: "../../scripts/check-openapi.py").standardized
        let result = try await runProcess(URL(filePath: "/usr/bin/env"), ["python3", script.path, input.path])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("\(samples.count) samples checked, 0 problems"))
    }
}

/// Whether python3 has jsonschema and openapi-spec-validator (the test command installs them).
func pythonCanCheckOpenAPI() -> Bool {
    let process = Process()
    process.executableURL = URL(filePath: "/usr/bin/env")
    process.arguments = ["python3", "-c", "import jsonschema, openapi_spec_validator"]
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return false }
    process.waitUntilExit()
    return process.terminationStatus == 0
}
