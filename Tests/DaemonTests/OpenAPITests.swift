import BuiltinEngine
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

@Suite("OpenAPI document")
struct OpenAPITests {
    static func document() throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: OpenAPIDocument.json) as? [String: Any])
    }

    @Test("every route of the router is documented, every documented route exists, and the router serves the document built")
    func routesMatch() async throws {
        let daemon = try await TestDaemon()
        // Ollama's API (`/api/*` outside `/api/v1`) is Ollama's own, documented in docs/ollama-api.md.
        let routes = Set(
            buildRouter(daemon.context).routes.map { route in
                let path =
                    "/"
                    + route.path.description.split(separator: "/").map { segment in
                        segment.hasPrefix(":") ? "{\(segment.dropFirst())}" : String(segment)
                    }.joined(separator: "/")
                return "\(route.method.rawValue.lowercased()) \(path)"
            }
        ).filter { !OllamaController.owns(String($0.split(separator: " ")[1])) }
        let paths = try #require(try Self.document()["paths"] as? [String: [String: Any]])
        var documented: Set<String> = []
        for (path, operations) in paths {
            for method in operations.keys { documented.insert("\(method) \(path)") }
        }
        #expect(documented.count == OpenAPIDocument.operations.count, "an operation is listed twice")
        // `{ref}/{name}` is the unencoded spelling of `{ref}` for repository ids (owner/name).
        let undocumented = routes.subtracting(documented).subtracting([
            "get /api/v1/models/{ref}/{name}", "get /api/v1/models/{ref}/{name}/export",
        ])
        #expect(undocumented.isEmpty, "routes missing from the OpenAPI document: \(undocumented.sorted())")
        let stale = documented.subtracting(routes)
        #expect(stale.isEmpty, "documented routes the router lacks: \(stale.sorted())")

        // What `/openapi.json` serves is the document built from the operations and the wire types.
        let built = try JSONSerialization.data(withJSONObject: try OpenAPIDocument.document(), options: [.sortedKeys, .withoutEscapingSlashes])
        let served = try await daemon.serve { client in
            try await client.execute(uri: "/openapi.json", method: .get) { response in Data(response.body.readableBytesView) }
        }
        #expect(served == built)
    }

    @Test("each operation's documented access is the authorizer's rule")
    func accessMatchesAuthorizer() async throws {
        let daemon = try await TestDaemon()
        let (_, inference) = try await daemon.context.store.createAPIKey(name: "inference", scope: "inference")
        let (_, admin) = try await daemon.context.store.createAPIKey(name: "admin", scope: "admin")
        for operation in OpenAPIDocument.operations {
            let path = operation.path.replacing(/\{[a-z]+\}/, with: "x")
            func allowed(_ key: String?) async throws -> Bool {
                try await daemon.context.authorizer.decide(path: path, authorization: key.map { "Bearer \($0)" }, isControlSocket: false).allows
            }
            let name = "\(operation.method) \(operation.path)"
            #expect(try await allowed(nil) == (operation.access == .open), "\(name) without a key")
            #expect(try await allowed(inference) == (operation.access != .admin), "\(name) with an inference key")
            #expect(try await allowed(admin), "\(name) with an admin key")
        }
    }

    @Test("encoded samples of every wire type in the document match their generated schemas")
    func samplesMatchSchemas() throws {
        let document = try Self.document()
        let check = try SchemaCheck(document: document)
        var generator = SeededGenerator(seed: 1616)
        let recorder = SchemaRecorder(random: { Int.random(in: 0..<$0, using: &generator) })
        let paths = try #require(document["paths"] as? [String: [String: [String: Any]]])
        var checked = 0
        var problems: [String] = []
        for operation in OpenAPIDocument.operations {
            let described = try #require(paths[operation.path]?[operation.method.rawValue])
            var contents: [(name: String, content: [String: APIOperation.Shape], described: [String: Any]?)] = []
            if let body = operation.body {
                let requestBody = described["requestBody"] as? [String: Any]
                contents.append(("request", [body.type: body.shape], requestBody?["content"] as? [String: Any]))
            }
            let responses = try #require(described["responses"] as? [String: [String: Any]])
            for (status, reply) in operation.replies {
                contents.append((status, reply.content, responses[status]?["content"] as? [String: Any]))
            }
            for (name, content, described) in contents {
                for (mediaType, shape) in content {
                    let schema = try #require((described?[mediaType] as? [String: Any])?["schema"] as? [String: Any])
                    for _ in 0..<40 {
                        guard let sample = try Self.sample(shape, recorder) else { break }
                        checked += 1
                        problems += check.problems(sample, schema).map { "\(operation.method) \(operation.path) \(name) \(mediaType)\($0)" }
                    }
                }
            }
        }
        // The replies the document describes without naming a type: errors in the envelope and in OpenAI's shape.
        for _ in 0..<40 {
            problems += check.problems(try #require(try Self.sampleJSON(Envelope<EmptyPayload>.self, recorder)), SchemaRecorder.ref("ErrorEnvelope"))
        }
        for param in [nil, "model"] {
            let buffer = ErrorShape.openAI.body(APIError(.notFound, "no such model", field: param), requestID: "test")
            let body = try JSONDecoder().decode(JSONValue.self, from: Data(buffer.readableBytesView))
            problems += check.problems(body, SchemaRecorder.ref("OpenAIError"))
        }
        #expect(problems.isEmpty, "\(problems.prefix(20).joined(separator: "\n"))")
        #expect(checked > 1000)
        // Every named schema was met, but the request bodies no reply carries (the LLM API's, read only).
        let unmet = try #require((document["components"] as? [String: Any])?["schemas"] as? [String: Any]).keys.filter { !check.met.contains($0) }
        #expect(Set(unmet) == ["LLMGenerateRequest", "LLMChatRequest", "LLMStructuredRequest", "TokenCountRequest", "OpenAIRequest"])
    }

    @Test("the schema check finds a missing required key, an undeclared key and a wrong type")
    func schemaCheckCanFail() throws {
        let check = try SchemaCheck(document: try Self.document())
        let key = KeyInfo(
            id: "k1", name: "ci", prefix: "mk_1", scope: "admin", createdAt: Date(), lastUsedAt: nil, revoked: false, key: nil)
        let encoded = try JSONDecoder().decode(JSONValue.self, from: try WireJSON.encoder().encode(Envelope(requestID: "r", data: key)))
        let schema = try #require(
            try OpenAPIDocument.operations.first { $0.path == "/api/v1/keys/{id}/revoke" }.map { operation in
                try Self.replySchema(operation, in: try Self.document())
            })
        #expect(check.problems(encoded, schema).isEmpty)
        func changed(_ change: (inout [String: JSONValue]) -> Void) -> JSONValue {
            guard case .object(var envelope) = encoded, case .object(var data) = envelope["data"] else { return encoded }
            change(&data)
            envelope["data"] = .object(data)
            return .object(envelope)
        }
        #expect(!check.problems(changed { $0["revoked"] = nil }, schema).isEmpty)
        #expect(!check.problems(changed { $0["surprise"] = .bool(true) }, schema).isEmpty)
        #expect(!check.problems(changed { $0["name"] = .integer(5) }, schema).isEmpty)
        #expect(!check.problems(changed { $0["last_used_at"] = .null }, schema).isEmpty)
    }

    @Test("the recorder reads required, optional and nullable fields, nested types, dictionaries and enumerations")
    func recorderReadsTypes() throws {
        let recorder = SchemaRecorder()
        let schema = try recorder.schema(for: SchemaProbe.self)
        let nested: JSONSchema = [
            "type": "object", "properties": ["flag": ["type": "boolean"]], "required": ["flag"], "additionalProperties": false,
        ]
        let probe: JSONSchema = [
            "type": "object", "additionalProperties": false,
            "properties": [
                "name": ["type": "string", "description": "what it is called"], "count": ["type": "integer"], "ratio": ["type": "number"],
                "tags": ["type": "array", "items": ["type": "string"]], "color": ["type": "string", "enum": ["red", "green"]],
                "when": ["type": "string", "format": "date-time"],
                "nested": ["anyOf": [SchemaRecorder.ref("SchemaProbe.Nested"), ["type": "null"]]],
                "sizes": ["type": "object", "additionalProperties": ["type": "integer"]],
            ],
            // `ratio` and `when` are left out when nil; `nested` is written as null.
            "required": ["name", "count", "tags", "color", "nested", "sizes"],
        ]
        func json(_ object: Any) throws -> String {
            String(decoding: try JSONSerialization.data(withJSONObject: object, options: .sortedKeys), as: UTF8.self)
        }
        #expect(try json(schema) == json(SchemaRecorder.ref("SchemaProbe")))
        #expect(try json(recorder.components) == json(["SchemaProbe": probe, "SchemaProbe.Nested": nested]))
    }

    /// The schema of an operation's 200 reply in JSON.
    static func replySchema(_ operation: APIOperation, in document: [String: Any]) throws -> [String: Any] {
        let paths = try #require(document["paths"] as? [String: [String: [String: Any]]])
        let responses = try #require(paths[operation.path]?[operation.method.rawValue]?["responses"] as? [String: [String: Any]])
        let content = try #require(responses["200"]?["content"] as? [String: [String: Any]])
        return try #require(content["application/json"]?["schema"] as? [String: Any])
    }

    /// An encoded sample of a shape's wire type; nil for a fixed schema or a type that is only read.
    static func sample(_ shape: APIOperation.Shape, _ recorder: SchemaRecorder) throws -> JSONValue? {
        switch shape {
        case .type(let type): try sampleJSON(type, recorder)
        case .envelope(let type): try sampleEnvelope(type, recorder)
        case .schema: nil
        }
    }

    static func sampleEnvelope<Payload: Codable & Sendable>(_ type: Payload.Type, _ recorder: SchemaRecorder) throws -> JSONValue? {
        try sampleJSON(Envelope<Payload>.self, recorder)
    }

    static func sampleJSON<T: Decodable>(_ type: T.Type, _ recorder: SchemaRecorder) throws -> JSONValue? {
        guard let value = try recorder.sample(type) as? any Encodable else { return nil }
        return try JSONDecoder().decode(JSONValue.self, from: try WireJSON.encoder().encode(value))
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
        let collected = try await daemon.serve { client in
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

/// A wire type with a field of each kind the recorder tells apart.
struct SchemaProbe: Codable, WireDocumented {
    enum Color: String, Codable, WireEnumeration {
        case red, green
    }

    struct Nested: Codable {
        var flag: Bool
    }

    var name: String
    var count: Int64
    var ratio: Double?
    var tags: [String]
    var color: Color
    var when: Date?
    var nested: Nested?
    var sizes: [String: Int]

    static var wireNotes: WireNotes { WireNotes(fields: ["name": ["description": "what it is called"]]) }

    enum CodingKeys: CodingKey { case name, count, ratio, tags, color, when, nested, sizes }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(count, forKey: .count)
        try container.encodeIfPresent(ratio, forKey: .ratio)
        try container.encode(tags, forKey: .tags)
        try container.encode(color, forKey: .color)
        try container.encodeIfPresent(when, forKey: .when)
        try container.encode(nested, forKey: .nested)
        try container.encode(sizes, forKey: .sizes)
    }
}

/// Checks a JSON value against the part of JSON Schema the generated document uses (`$ref`, `type`, `properties`,
/// `required`, `additionalProperties`, `items`, `enum`, `anyOf`, `oneOf`, `minimum`, `pattern`).
final class SchemaCheck {
    let components: [String: [String: Any]]
    /// The named schemas a checked value was held against.
    private(set) var met: Set<String> = []

    init(document: [String: Any]) throws {
        components = try #require((document["components"] as? [String: Any])?["schemas"] as? [String: [String: Any]])
    }

    /// What is wrong with `value`, one line per problem, each starting with where (`.data.runs[0].state`).
    func problems(_ value: JSONValue, _ schema: [String: Any], at path: String = "") -> [String] {
        if let ref = schema["$ref"] as? String {
            let name = String(ref.dropFirst("#/components/schemas/".count))
            guard let target = components[name] else { return ["\(path): no schema \(name)"] }
            met.insert(name)
            return problems(value, target, at: path)
        }
        var found: [String] = []
        if let anyOf = schema["anyOf"] as? [[String: Any]] {
            let each = anyOf.map { problems(value, $0, at: path) }
            if !each.contains(where: \.isEmpty) { found += each.min { $0.count < $1.count } ?? [] }
        }
        if let oneOf = schema["oneOf"] as? [[String: Any]], oneOf.filter({ problems(value, $0, at: path).isEmpty }).count != 1 {
            found.append("\(path): matches not exactly one of oneOf")
        }
        let types = (schema["type"] as? String).map { [$0] } ?? schema["type"] as? [String]
        if let types, !types.contains(where: { Self.value(value, is: $0) }) { return found + ["\(path): \(value) is not \(types)"] }
        if let values = schema["enum"] as? [Any], !values.contains(where: { Self.value(value, equals: $0) }) {
            found.append("\(path): \(value) is not one of \(values)")
        }
        if let minimum = schema["minimum"] as? Int, case .integer(let number) = value, number < minimum {
            found.append("\(path): \(number) is below \(minimum)")
        }
        if let pattern = schema["pattern"] as? String, case .string(let text) = value,
            (try? Regex(pattern)).flatMap({ try? $0.firstMatch(in: text) }) == nil
        {
            found.append("\(path): \(text) does not match \(pattern)")
        }
        switch value {
        case .object(let members):
            let properties = schema["properties"] as? [String: [String: Any]] ?? [:]
            for key in schema["required"] as? [String] ?? [] where members[key] == nil { found.append("\(path): lacks \(key)") }
            for (key, member) in members.sorted(by: { $0.key < $1.key }) {
                if let property = properties[key] {
                    found += problems(member, property, at: "\(path).\(key)")
                } else if let additional = schema["additionalProperties"] as? [String: Any] {
                    found += problems(member, additional, at: "\(path).\(key)")
                } else if schema["additionalProperties"] as? Bool == false {
                    found.append("\(path): undeclared key \(key)")
                }
            }
        case .array(let elements):
            if let items = schema["items"] as? [String: Any] {
                for (index, element) in elements.enumerated() { found += problems(element, items, at: "\(path)[\(index)]") }
            }
        default: break
        }
        return found
    }

    private static func value(_ value: JSONValue, is type: String) -> Bool {
        switch (value, type) {
        case (.null, "null"), (.bool, "boolean"), (.integer, "integer"), (.integer, "number"), (.number, "number"), (.string, "string"),
            (.array, "array"), (.object, "object"):
            true
        default: false
        }
    }

    private static func value(_ value: JSONValue, equals listed: Any) -> Bool {
        switch value {
        case .null: listed is NSNull
        case .string(let text): listed as? String == text
        default: false
        }
    }
}
