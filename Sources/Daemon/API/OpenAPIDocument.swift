import Catalog
import Downloads
import Foundation
import ModelStore
import ModeldAPI

/// The OpenAPI 3.1 description of the management API, served at `/openapi.json` (and rendered at `/docs`).
///
/// Built from two sources: ``operations``, the routes as data (method, path, body and reply types, parameters, who
/// may call them), and the wire types themselves, whose schemas ``SchemaRecorder`` reads from their `Codable`
/// conformances. Tests check that the router and ``operations`` list the same routes, that encoded wire values
/// match their schemas, and that live responses do.
enum OpenAPIDocument {
    static let json: Data = {
        do {
            return try JSONSerialization.data(withJSONObject: try document(), options: [.sortedKeys, .withoutEscapingSlashes])
        } catch {
            // The document is built from types fixed at compile time; a test builds it too and fails on this.
            preconditionFailure("the OpenAPI document cannot be built: \(error)")
        }
    }()

    /// The document as JSON objects.
    static func document() throws -> [String: Any] {
        let recorder = SchemaRecorder()
        recorder.name("ErrorEnvelope", try recorder.schema(for: Envelope<EmptyPayload>.self))
        recorder.name("OpenAIError", openAIError)
        recorder.name(
            "OpenAIRequest", ["type": "object", "required": ["model"], "properties": ["model": ["type": "string"]], "additionalProperties": true])
        var paths: [String: [String: Any]] = [:]
        for operation in operations {
            paths[operation.path, default: [:]][operation.method.rawValue] = try operation.described(recorder)
        }
        return [
            "openapi": "3.1.0",
            "info": [
                "title": "modeld management API", "version": "0.1.0",
                "description":
                    "Pull, store, run and supervise LLM inference engines. Every reply but streams is an envelope {request_id, code, msg, data}.",
            ],
            "servers": [["url": "http://127.0.0.1:8700"]],
            "paths": paths,
            "components": [
                "schemas": recorder.components,
                "securitySchemes": [
                    "apiKey": [
                        "type": "http", "scheme": "bearer",
                        "description": "Needed once any key exists; an operation's role says which scope (admin, or any key)",
                    ]
                ],
            ],
        ]
    }

    /// OpenAI's error shape, answered under `/v1`.
    private static var openAIError: JSONSchema {
        [
            "type": "object", "required": ["error"], "additionalProperties": false,
            "properties": [
                "error": [
                    "type": "object", "required": ["message", "type"], "additionalProperties": true,
                    "properties": [
                        "message": ["type": "string"], "type": ["type": "string"], "param": ["type": ["string", "null"]],
                        "code": ["type": ["integer", "string", "null"]],
                    ],
                ]
            ],
        ]
    }

    // MARK: The operations

    /// Every documented route. Paths use OpenAPI's `{name}` for the router's `:name`.
    static var operations: [APIOperation] {
        let runID = APIOperation.Parameter.path("id", "Run id or name")
        let pullID = APIOperation.Parameter.path("id", "Pull job id")
        let upstreamName = APIOperation.Parameter.path("name", "The upstream's name")
        let yesNo: JSONSchema = ["type": "string", "enum": ["true", "false"]]
        let text: JSONSchema = ["type": "string"]
        let binary: JSONSchema = ["type": "string", "format": "binary"]
        let anyObject: JSONSchema = ["type": "object"]
        let notModified: [String: APIOperation.Reply] = ["304": .init("Not modified: If-None-Match names the current ETag")]
        let consoleFile = APIOperation.Reply(
            "The file, gzip-encoded when accepted; a strong ETag", ["text/css": .schema(text), "text/javascript": .schema(text)])
        let gatewayErrors: [String: APIOperation.Reply] = [
            "403": .error("The API key may not use this model (its allowed_models)"),
            "429": .error("The API key is over a quota (rate, tokens per day or month, spending cap); the message says which and when it resets"),
            "502": .error("The engine failed or did not answer"), "503": .error("An on-demand start failed"),
        ]
        let relayed = APIOperation.Reply("The engine's reply, relayed", ["application/json": .schema(anyObject), "text/event-stream": .schema(text)])
        let engineErrors: [String: APIOperation.Reply] = [
            "409": .error("The run named by run_id is not ready"), "413": .error("The body is larger than 32 MiB"),
            "403": .error("The API key may not use this model (its allowed_models)"),
            "429": .error("The API key is over a quota (rate, tokens per day or month, spending cap); the message says which and when it resets"),
            "502": .error("The engine failed or did not answer"), "503": .error("An on-demand start failed"),
        ]
        func streaming(_ reply: any (Codable & Sendable).Type) -> APIOperation.Reply {
            .init(
                "The reply in the envelope; with stream true, NDJSON events: deltas, then one done event",
                ["application/json": .envelope(reply), "application/x-ndjson": .type(LLMStreamEvent.self)])
        }
        let event: JSONSchema = [
            "type": "object", "description": "One event",
            "properties": [
                "id": text, "event": ["type": "string", "enum": DaemonEventType.allCases.map(\.rawValue)],
                "data": ["type": "string", "description": "One JSON object"], "retry": ["type": "integer"],
            ],
        ]
        return [
            .get("/health", "Liveness and version", .open, ok: .init("OK", ["application/json": .type(HealthInfo.self)])),
            .get(
                "/readiness", "Readiness: the store answers, every listener accepts, the recorded runs are reconciled", .open,
                ok: .envelope(HealthInfo.self, "Ready"), more: ["503": .error("Not ready (yet, or any more): the message says why")]),
            .get("/openapi.json", "This document", ok: .init("The OpenAPI document", ["application/json": .schema(anyObject)])),
            .get("/docs", "Human-readable API documentation", ok: .init("HTML page", ["text/html": .schema(text)])),
            .get(
                "/", "The web console's page for a browser (Accept: text/html); any other client gets the line \"modeld is running\". Needs no key",
                .open, ok: .init("The page, or the line", ["text/html": .schema(text), "text/plain": .schema(text)]), more: notModified),
            .head("/", "Whether the daemon is running", .open, ok: .init("Running")),
            .get(
                "/ui/{file}", "A file of the web console (CSS, JavaScript), compiled into modeld; needs no key", .open, ok: consoleFile,
                parameters: [.path("file", "The file's name, e.g. app.js")], more: notModified),
            .get(
                "/ui/views/{file}", "A view module of the web console; needs no key", .open, ok: consoleFile,
                parameters: [.path("file", "The module's name, e.g. runs.js")], more: notModified),
            .get(
                "/metrics", "Prometheus metrics: requests, durations, tokens, time to first token, runs, engine restarts, pulled bytes",
                .anyKey, ok: .init("Prometheus text format 0.0.4", ["text/plain": .schema(text)])),

            // OpenAI's API: bodies pass through to the engine, so only `model` is described.
            .get("/v1/models", "OpenAI: the models of ready runs", .anyKey, ok: .init("OK", ["application/json": .schema(anyObject)])),
            .post(
                "/v1/chat/completions", "OpenAI chat, routed by `model` to a ready run (SSE when stream is true)", .anyKey,
                body: .schema(SchemaRecorder.ref("OpenAIRequest")), ok: relayed, more: gatewayErrors),
            .post(
                "/v1/completions", "OpenAI completion, routed by `model`", .anyKey, body: .schema(SchemaRecorder.ref("OpenAIRequest")),
                ok: relayed, more: gatewayErrors),
            .post(
                "/v1/embeddings", "OpenAI embeddings, routed by `model`", .anyKey, body: .schema(SchemaRecorder.ref("OpenAIRequest")),
                ok: .init("The engine's reply, relayed", ["application/json": .schema(anyObject)]), more: gatewayErrors),

            .get("/api/v1/keys", "API keys (never their values)", ok: .envelope([KeyInfo].self)),
            .post(
                "/api/v1/keys", "Create an API key; the value is in this answer only", body: .type(KeyCreateRequest.self),
                ok: .envelope(KeyInfo.self), more: ["409": .error("The name is taken")]),
            .post("/api/v1/keys/{id}/revoke", "Revoke an API key", ok: .envelope(KeyInfo.self), parameters: [.path("id", "Key id or name")]),
            .patch(
                "/api/v1/keys/{id}",
                "Change an active key's limits: requests per minute, tokens per UTC day and month, a spending cap per UTC month, allowed models. A field left out keeps its value; 0 (or an empty allowed_models) removes the limit",
                body: .type(KeyLimitsRequest.self), ok: .envelope(KeyInfo.self), parameters: [.path("id", "Key id or name")],
                more: ["404": .error("No active key has this id or name")]),
            .get(
                "/api/v1/usage",
                "Usage of the requests that reached a backend (tokens, cost, latency, errors), summed per key, model, backend or UTC day; rows older than usage_retention are kept summed per day",
                ok: .envelope(UsageReport.self),
                parameters: [
                    .init(
                        name: "from", location: "query",
                        description: "A UTC day (2026-12-01) or time (2026-12-01T12:00:00Z); default: 30 days before to", schema: text),
                    .init(name: "to", location: "query", description: "Exclusive, as from; default: the end of today (UTC)", schema: text),
                    .init(
                        name: "group_by", location: "query", description: "What to sum per; default: one total",
                        schema: ["type": "string", "enum": UsageGrouping.allCases.map(\.rawValue)]),
                ]),
            .get(
                "/api/v1/upstreams", "Upstreams: where each key comes from and whether it is set, never the key",
                ok: .envelope([UpstreamInfo].self)),
            .post(
                "/api/v1/upstreams", "Add an upstream, or replace the settings of the one with this name; with discover, list its models",
                body: .type(UpstreamRequest.self), ok: .envelope(UpstreamInfo.self)),
            .get("/api/v1/upstreams/{name}", "One upstream", ok: .envelope(UpstreamInfo.self), parameters: [upstreamName]),
            .post("/api/v1/upstreams/{name}/remove", "Remove an upstream", ok: .envelope(UpstreamInfo.self), parameters: [upstreamName]),
            .post(
                "/api/v1/upstreams/{name}/disable", "Send an upstream no more requests", ok: .envelope(UpstreamInfo.self),
                parameters: [upstreamName]),
            .post("/api/v1/upstreams/{name}/enable", "Send an upstream requests again", ok: .envelope(UpstreamInfo.self), parameters: [upstreamName]),
            .post(
                "/api/v1/upstreams/{name}/test", "List an upstream's models with its key: reachable, key accepted",
                ok: .envelope(UpstreamTestResult.self), parameters: [upstreamName]),
            .get("/api/v1/model-groups", "Model groups: a public name, the models it routes to, the strategy", ok: .envelope([ModelGroupInfo].self)),
            .post("/api/v1/model-groups", "Create or replace a model group", body: .type(ModelGroupInfo.self), ok: .envelope(ModelGroupInfo.self)),
            .post(
                "/api/v1/model-groups/{name}/remove", "Remove a model group", ok: .envelope(EmptyPayload.self),
                parameters: [.path("name", "The group's name")]),
            .get(
                "/api/v1/events",
                "Live events as Server-Sent Events (`id`, `event`, one JSON `data` line): \(DaemonEventType.allCases.map(\.rawValue).joined(separator: ", ")). Send Last-Event-ID to get what was missed.",
                ok: .init("An event stream that stays open", ["text/event-stream": .schema(event)]),
                parameters: [.init(name: "Last-Event-ID", location: "header", description: "The id of the last event seen", schema: text)]),
            .get(
                "/api/v1/status", "A summary: version, data directory use and free space, runs by state, local versions, tokens served, uptime",
                ok: .envelope(DaemonStatus.self)),
            .get(
                "/api/v1/system", "The host: CPU, memory, the data directory's disk, and its NVIDIA GPUs with the runs holding each",
                ok: .envelope(SystemInfo.self)),

            .get("/api/v1/models", "Catalog models with their local state", ok: .envelope([CatalogModelInfo].self)),
            .get(
                "/api/v1/models/{ref}", "One model: catalog entry, local versions and runs", ok: .envelope(ModelDetail.self),
                parameters: [.path("ref", "Catalog ref (qwen2.5:0.5b) or repository id, URL-encoded (Qwen%2FQwen2.5-0.5B-Instruct)")]),
            .post(
                "/api/v1/models/resolve", "Which hub repository a ref names", body: .type(ResolveRequest.self),
                ok: .envelope(ResolveResponse.self)),
            .post(
                "/api/v1/models/pull", "Start or join a pull; NDJSON progress events (or one envelope with ?stream=false)",
                body: .type(PullRequestBody.self),
                ok: .init(
                    "Progress events, one JSON object per line; the last is `done` or `error`",
                    ["application/x-ndjson": .type(PullEvent.self), "application/json": .envelope(PullEvent.self)]),
                parameters: [.query("stream", yesNo, "false: wait and answer once")]),
            .get("/api/v1/models/pulls", "Running pulls", ok: .envelope([PullEvent].self)),
            .get("/api/v1/models/pulls/{id}", "One pull's current state", ok: .envelope(PullEvent.self), parameters: [pullID]),
            .post(
                "/api/v1/models/pulls/{id}/cancel", "Cancel a pull", ok: .envelope(PullEvent.self), parameters: [pullID],
                more: ["409": .error("Already finished")]),
            .get("/api/v1/models/local", "Every local version", ok: .envelope([LocalVersionInfo].self)),
            .post(
                "/api/v1/models/remove", "Remove a version (every version without revision)", body: .type(VersionSelector.self),
                ok: .envelope(RemoveResult.self)),
            .post(
                "/api/v1/models/verify", "Re-hash a version and report damage", body: .type(VersionSelector.self),
                ok: .envelope([VerifyResult].self)),
            .post(
                "/api/v1/models/start", "Start a model on an engine", body: .type(StartRequest.self),
                ok: .envelope(RunSummary.self, "OK: the run, starting"), more: ["409": .error("Not pulled, or the name is taken")]),
            .get("/api/v1/models/running", "Every run", ok: .envelope([RunSummary].self)),
            .get("/api/v1/models/running/{id}", "One run", ok: .envelope(RunSummary.self), parameters: [runID]),
            .post("/api/v1/models/running/{id}/stop", "Stop a run (it stays stopped)", ok: .envelope(RunSummary.self), parameters: [runID]),
            .get(
                "/api/v1/models/running/{id}/logs", "A run's engine log; follow=true streams text lines",
                ok: .init("The last lines, or a text stream", ["application/json": .envelope(RunLogs.self), "text/plain": .schema(text)]),
                parameters: [
                    runID, .query("tail", ["type": "integer"], "Lines from the end (default 100)"), .query("follow", yesNo, "Stream new lines"),
                ]),
            .get(
                "/api/v1/models/running/{id}/metrics",
                "A ready run's engine metrics (llama.cpp, vLLM; SGLang with --enable-metrics), relayed",
                ok: .init("Prometheus text format", ["text/plain": .schema(text)]), parameters: [runID],
                more: [
                    "404": .error("The engine serves no metrics"), "409": .error("The run is not ready"),
                    "502": .error("The engine did not answer"),
                ]),
            .post(
                "/api/v1/models/import",
                "Import a model archive (tar, tar.gz, tar.zst or zip with modeld-manifest.json first), streamed; every file is checked before the version is registered",
                body: .schema(binary), bodyType: "application/octet-stream", ok: .envelope(ImportResult.self, "OK: the version, ready"),
                more: ["507": .error("Not enough disk space")]),
            .post(
                "/api/v1/models/adopt", "Register models already on this host without copying: a Hugging Face hub cache or a plain model directory",
                body: .type(AdoptRequest.self), ok: .envelope(AdoptResult.self, "OK: what was registered and what was skipped")),
            .get(
                "/api/v1/models/{ref}/export", "A local version as an archive, streamed (modeld-manifest.json first, then the files)",
                ok: .init("The archive", Dictionary(uniqueKeysWithValues: ArchiveFormat.allCases.map { ($0.contentType, .schema(binary)) })),
                parameters: [
                    .path("ref", "Catalog ref or repository id, URL-encoded"),
                    .query("source", ["type": "string", "enum": ModelSource.allCases.map(\.rawValue)], "The hub (default huggingface)"),
                    .query("revision", text, "Commit, unique prefix or revision (default: the newest ready version)"),
                    .query(
                        "format", ["type": "string", "enum": ["tar", "tar.gz", "tgz", "tar.zst", "tzst", "zip"]], "Archive format (default tar.zst)"),
                ],
                more: ["409": .error("The version is not ready")]),

            // The LLM API: inference in the envelope; further fields go to the engine untouched.
            .post(
                "/api/v1/llm/generate", "Complete a prompt on a run (by run_id) or a model (routed, started on demand)", .anyKey,
                body: .type(LLMGenerateRequest.self), ok: streaming(LLMGeneration.self), more: engineErrors),
            .post(
                "/api/v1/llm/chat", "Answer a conversation on a run (by run_id) or a model (routed, started on demand)", .anyKey,
                body: .type(LLMChatRequest.self), ok: streaming(LLMChatReply.self), more: engineErrors),
            .post(
                "/api/v1/llm/structured-generate", "JSON output constrained to a schema (every engine; an unsupported schema keyword is a 400)",
                .anyKey, body: .type(LLMStructuredRequest.self), ok: .envelope(LLMStructuredReply.self), more: engineErrors),
            .post(
                "/api/v1/llm/count-tokens", "Count tokens with the model's own tokenizer (no engine needed)", .anyKey,
                body: .type(TokenCountRequest.self), ok: .envelope(TokenCount.self)),

            // The earlier services' routes (docs/older-api.md); a request without `model` goes to default_model.
            .post(
                "/generate", "Earlier service: complete several prompts with the same sampling_params, in order", .anyKey,
                body: .type(OlderGenerateRequest.self), ok: .envelope([OlderCompletion].self), more: engineErrors),
            .post(
                "/api/count-tokens", "Earlier RAG service: count a text's tokens with the model's tokenizer", .anyKey,
                body: .type(OlderCountTokensRequest.self), ok: .envelope(TokenCount.self)),
        ] + sessionOperations
    }

    /// Conversation sessions and the WebSocket chat: any key, each key seeing only its own sessions (an admin key all).
    private static var sessionOperations: [APIOperation] {
        let session = APIOperation.Parameter.path("id", "Session id or name")
        let notYours: [String: APIOperation.Reply] = ["404": .error("No such session, or another key's")]
        let reply = APIOperation.Reply(
            "The stored reply in the envelope; with stream true, NDJSON events: deltas, then one done event with the stored message",
            ["application/json": .envelope(SessionReply.self), "application/x-ndjson": .type(SessionStreamEvent.self)])
        let replyErrors = notYours.merging([
            "409": .error("A reply in this session is being generated"), "502": .error("The engine failed or did not answer"),
            "503": .error("An on-demand start failed"),
        ]) { $1 }
        return [
            .post(
                "/api/v1/sessions", "Start a conversation session with a model, a system prompt and sampling options", .anyKey,
                body: .type(SessionCreateRequest.self), ok: .envelope(SessionInfo.self), more: ["409": .error("The name is taken")]),
            .get(
                "/api/v1/sessions", "The caller's sessions, newest first", .anyKey, ok: .envelope(SessionPage.self),
                parameters: [
                    .query("limit", ["type": "integer", "minimum": 1, "maximum": SessionsController.maxPage], "Sessions per page (default 50)"),
                    .query("offset", ["type": "integer", "minimum": 0], "Sessions to skip"),
                ]),
            .get(
                "/api/v1/sessions/{id}", "A session with the messages of its branch in use", .anyKey, ok: .envelope(SessionInfo.self),
                parameters: [session], more: notYours),
            .delete("/api/v1/sessions/{id}", "Delete a session", .anyKey, ok: .envelope(SessionInfo.self), parameters: [session], more: notYours),
            .post(
                "/api/v1/sessions/{id}/messages", "Add a user message and generate the reply (history fitted to the model's context)", .anyKey,
                body: .type(SessionMessageRequest.self), ok: reply, parameters: [session], more: replyErrors),
            .post(
                "/api/v1/sessions/{id}/regenerate", "Generate the last reply again (the old one stays, as an alternative)", .anyKey,
                body: .type(SessionMessageRequest.self), ok: reply, parameters: [session], more: replyErrors),
            .post(
                "/api/v1/sessions/{id}/messages/{message}/edit", "Rewrite a user message as a new branch and generate its reply", .anyKey,
                body: .type(SessionMessageRequest.self), ok: reply, parameters: [session, .path("message", "A user message's id")],
                more: replyErrors),
            .post(
                "/api/v1/sessions/{id}/rollback", "Delete the messages after one on the branch in use", .anyKey,
                body: .type(SessionRollbackRequest.self), ok: .envelope(SessionInfo.self), parameters: [session], more: notYours),
            .post(
                "/api/v1/sessions/{id}/checkout", "Use the branch that ends at a message", .anyKey, body: .type(SessionCheckoutRequest.self),
                ok: .envelope(SessionInfo.self), parameters: [session], more: notYours),
            .post(
                "/api/v1/sessions/{id}/stop", "Stop the reply being generated; it is stored as partial", .anyKey, ok: .envelope(SessionInfo.self),
                parameters: [session], more: notYours.merging(["409": .error("No reply is being generated")]) { $1 }),
            .get(
                ChatSocket.path,
                "WebSocket chat (docs/websocket-chat.md): upgrade a new connection; the key in Authorization or a first auth frame",
                .anyKey, ok: .init("Never: the upgrade answers 101 Switching Protocols"),
                more: ["426": .error("Not a WebSocket upgrade")]),
        ]
    }

    /// A self-contained documentation page: the document rendered as a list of routes and schemas.
    static let html: String = """
        <!doctype html><html><head><meta charset="utf-8"><title>modeld API</title>
        <style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
        code,pre{background:#f4f4f4;padding:.1rem .3rem}h2{border-bottom:1px solid #ddd}.m{font-weight:bold;display:inline-block;width:4rem}</style>
        </head><body><h1>modeld management API</h1><p>The machine-readable description is at <a href="/openapi.json">/openapi.json</a>.</p>
        <div id="routes">Loading…</div>
        <script>
        fetch('/openapi.json').then(r => r.json()).then(doc => {
          let html = '<p>' + doc.info.description + '</p><h2>Routes</h2>';
          for (const [path, ops] of Object.entries(doc.paths).sort()) {
            for (const [method, op] of Object.entries(ops)) {
              html += '<p><span class="m">' + method.toUpperCase() + '</span><code>' + path + '</code> — ' + op.summary + '</p>';
            }
          }
          html += '<h2>Schemas</h2>';
          for (const [name, schema] of Object.entries(doc.components.schemas).sort()) {
            html += '<h3>' + name + '</h3><pre>' + JSON.stringify(schema, null, 2) + '</pre>';
          }
          document.getElementById('routes').innerHTML = html;
        });
        </script></body></html>
        """
}

/// One operation of the API, as data: ``OpenAPIDocument`` describes it, with the schemas of the wire types it names.
struct APIOperation {
    enum Method: String { case get, post, patch, head, delete }

    /// Who may call it once any API key exists (``Authorizer``).
    enum Access {
        /// Anyone, without a key.
        case open
        /// A key of any scope.
        case anyKey
        /// An admin key.
        case admin
    }

    /// A body's or a reply's content.
    enum Shape {
        /// A wire type.
        case type(any Decodable.Type)
        /// A wire type in the envelope.
        case envelope(any (Codable & Sendable).Type)
        /// A fixed schema, for what is not a wire type (text, files, relayed bodies).
        case schema(JSONSchema)
    }

    /// A reply: its description and its content by media type; an error reply has the route family's error shape.
    struct Reply {
        var description: String
        var content: [String: Shape]
        var isError = false

        init(_ description: String, _ content: [String: Shape] = [:]) {
            self.description = description
            self.content = content
        }

        static func envelope(_ type: any (Codable & Sendable).Type, _ description: String = "OK") -> Reply {
            Reply(description, ["application/json": .envelope(type)])
        }

        static func error(_ description: String) -> Reply {
            var reply = Reply(description)
            reply.isError = true
            return reply
        }
    }

    struct Parameter {
        var name: String
        /// `path`, `query` or `header`.
        var location: String
        var description: String
        var schema: JSONSchema

        static func path(_ name: String, _ description: String) -> Parameter {
            Parameter(name: name, location: "path", description: description, schema: ["type": "string"])
        }

        static func query(_ name: String, _ schema: JSONSchema, _ description: String) -> Parameter {
            Parameter(name: name, location: "query", description: description, schema: schema)
        }
    }

    var method: Method
    var path: String
    var summary: String
    var access: Access
    /// The request body and its media type.
    var body: (type: String, shape: Shape)?
    /// The replies beyond the errors every route may answer, by status.
    var replies: [String: Reply]
    var parameters: [Parameter]

    static func get(
        _ path: String, _ summary: String, _ access: Access = .admin, ok: Reply, parameters: [Parameter] = [], more: [String: Reply] = [:]
    ) -> APIOperation {
        APIOperation(
            method: .get, path: path, summary: summary, access: access, body: nil, replies: more.merging(["200": ok]) { $1 },
            parameters: parameters)
    }

    static func delete(
        _ path: String, _ summary: String, _ access: Access = .admin, ok: Reply, parameters: [Parameter] = [], more: [String: Reply] = [:]
    ) -> APIOperation {
        APIOperation(
            method: .delete, path: path, summary: summary, access: access, body: nil, replies: more.merging(["200": ok]) { $1 },
            parameters: parameters)
    }

    static func head(_ path: String, _ summary: String, _ access: Access = .admin, ok: Reply) -> APIOperation {
        APIOperation(method: .head, path: path, summary: summary, access: access, body: nil, replies: ["200": ok], parameters: [])
    }

    static func patch(
        _ path: String, _ summary: String, _ access: Access = .admin, body: Shape, ok: Reply, parameters: [Parameter] = [],
        more: [String: Reply] = [:]
    ) -> APIOperation {
        APIOperation(
            method: .patch, path: path, summary: summary, access: access, body: ("application/json", body),
            replies: more.merging(["200": ok]) { $1 }, parameters: parameters)
    }

    static func post(
        _ path: String, _ summary: String, _ access: Access = .admin, body: Shape? = nil, bodyType: String = "application/json", ok: Reply,
        parameters: [Parameter] = [], more: [String: Reply] = [:]
    ) -> APIOperation {
        APIOperation(
            method: .post, path: path, summary: summary, access: access, body: body.map { (bodyType, $0) },
            replies: more.merging(["200": ok]) { $1 }, parameters: parameters)
    }

    /// The operation as the document writes it. Every route may answer the errors of API keys and of bad input in its
    /// family's shape (OpenAI's under `/v1`, else the envelope), and a JSON body, which is read whole, a 413.
    func described(_ recorder: SchemaRecorder) throws -> [String: Any] {
        let errorSchema = SchemaRecorder.ref(path.hasPrefix("/v1/") ? "OpenAIError" : "ErrorEnvelope")
        func error(_ description: String) -> [String: Any] {
            ["description": description, "content": ["application/json": ["schema": errorSchema]]]
        }
        var responses: [String: Any] = [
            "400": error("Bad request: the message names the field"),
            "401": error("No API key, or an invalid or revoked one (only once a key exists)"),
            "403": error("The API key's scope does not cover this route"),
            "404": error("Unknown route, model, job or run"),
            "429": error("The API key's rate limit; Retry-After says when to retry"),
            "500": error("Internal error, with the request id"),
        ]
        if body?.type == "application/json" { responses["413"] = error("The body is larger than the limit (max_body_size, or the route's own)") }
        for (status, reply) in replies {
            if reply.isError {
                responses[status] = error(reply.description)
            } else {
                var described: [String: Any] = ["description": reply.description]
                if !reply.content.isEmpty { described["content"] = try Self.content(reply.content, recorder) }
                responses[status] = described
            }
        }
        var operation: [String: Any] = ["summary": summary, "responses": responses]
        switch access {
        case .open: operation["security"] = [[String: Any]]()
        case .anyKey: operation["security"] = [["apiKey": [String]()]]
        case .admin: operation["security"] = [["apiKey": ["admin"]]]
        }
        if let body { operation["requestBody"] = ["required": true, "content": try Self.content([body.type: body.shape], recorder)] }
        if !parameters.isEmpty {
            operation["parameters"] = parameters.map { parameter in
                [
                    "name": parameter.name, "in": parameter.location, "required": parameter.location == "path",
                    "description": parameter.description, "schema": parameter.schema,
                ]
            }
        }
        return operation
    }

    private static func content(_ content: [String: Shape], _ recorder: SchemaRecorder) throws -> [String: Any] {
        try content.mapValues { shape in
            switch shape {
            case .type(let type): ["schema": try recorder.schema(for: type)]
            case .envelope(let type): ["schema": try envelope(type, recorder)]
            case .schema(let schema): ["schema": schema]
            }
        }
    }

    private static func envelope<Payload: Codable & Sendable>(_ type: Payload.Type, _ recorder: SchemaRecorder) throws -> JSONSchema {
        try recorder.schema(for: Envelope<Payload>.self)
    }
}
