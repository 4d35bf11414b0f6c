import Downloads
import Foundation
import ModelStore
import ModeldAPI

/// The OpenAPI 3.1 description of the management API, served at `/openapi.json` (and rendered at `/docs`).
/// Tests check that every route of the router is here and that live responses match these schemas.
enum OpenAPIDocument {
    // MARK: Schema helpers

    private static func ref(_ name: String) -> [String: Any] { ["$ref": "#/components/schemas/\(name)"] }
    private static func array(_ items: [String: Any]) -> [String: Any] { ["type": "array", "items": items] }
    private static var string: [String: Any] { ["type": "string"] }
    private static var nullableString: [String: Any] { ["type": ["string", "null"]] }
    private static var integer: [String: Any] { ["type": "integer"] }
    private static var nullableInteger: [String: Any] { ["type": ["integer", "null"]] }
    private static var number: [String: Any] { ["type": "number"] }
    private static var boolean: [String: Any] { ["type": "boolean"] }
    private static var dateTime: [String: Any] { ["type": "string", "format": "date-time"] }

    private static func object(_ properties: [String: [String: Any]], required: [String], additional: Bool = false) -> [String: Any] {
        ["type": "object", "properties": properties, "required": required, "additionalProperties": additional]
    }

    /// The envelope around `data`.
    private static func envelope(_ data: [String: Any]) -> [String: Any] {
        object(
            ["request_id": string, "code": integer, "msg": string, "data": data],
            required: ["request_id", "code", "msg", "data"])
    }

    private static func jsonResponse(_ description: String, _ schema: [String: Any]) -> [String: Any] {
        ["description": description, "content": ["application/json": ["schema": schema]]]
    }

    /// The errors any route may answer, in the route family's shape (`ErrorEnvelope`, or `OpenAIError` under `/v1`):
    /// the API-key checks (once a key exists) apply to every route but `/health`.
    private static func errorResponses(_ schema: String) -> [String: Any] { [
        "400": jsonResponse("Bad request: the message names the field", ref(schema)),
        "401": jsonResponse("No API key, or an invalid or revoked one (only once a key exists)", ref(schema)),
        "403": jsonResponse("The API key's scope does not cover this route", ref(schema)),
        "404": jsonResponse("Unknown route, model, job or run", ref(schema)),
        "429": jsonResponse("The API key's rate limit; Retry-After says when to retry", ref(schema)),
        "500": jsonResponse("Internal error, with the request id", ref(schema)),
    ] }

    /// An operation; `body` names its JSON request body's schema, `openAI` gives it OpenAI's error shape.
    private static func operation(
        _ summary: String, _ ok: [String: Any], body: String? = nil, parameters: [[String: Any]] = [], extra: [String: Any] = [:],
        openAI: Bool = false
    ) -> [String: Any] {
        let errorSchema = openAI ? "OpenAIError" : "ErrorEnvelope"
        var responses = errorResponses(errorSchema)
        responses["200"] = ok
        if body != nil {
            responses["413"] = jsonResponse("The body is larger than the limit (max_body_size, or the route's own)", ref(errorSchema))
        }
        for (key, value) in extra { responses[key] = value }
        var operation: [String: Any] = ["summary": summary, "responses": responses]
        if let body {
            operation["requestBody"] = ["required": true, "content": ["application/json": ["schema": ref(body)]]]
        }
        if !parameters.isEmpty { operation["parameters"] = parameters }
        return operation
    }

    private static func pathParameter(_ name: String, _ description: String) -> [String: Any] {
        ["name": name, "in": "path", "required": true, "description": description, "schema": string]
    }

    private static func queryParameter(_ name: String, _ schema: [String: Any], _ description: String) -> [String: Any] {
        ["name": name, "in": "query", "required": false, "description": description, "schema": schema]
    }

    // MARK: The document

    static let json: Data = {
        let runID = pathParameter("id", "Run id or name")
        let gatewayErrors: [String: Any] = [
            "502": jsonResponse("The engine failed or did not answer", ref("OpenAIError")),
            "503": jsonResponse("An on-demand start failed", ref("OpenAIError")),
        ]
        let consoleFile: [String: Any] = [
            "description": "The file, gzip-encoded when accepted; a strong ETag",
            "content": ["text/css": ["schema": string], "text/javascript": ["schema": string]],
        ]
        let consoleNotModified: [String: Any] = ["304": ["description": "Not modified: If-None-Match names the current ETag"]]
        let paths: [String: Any] = [
            "/health": ["get": operation("Liveness and version", jsonResponse("OK", ref("Health")))],
            "/openapi.json": ["get": operation("This document", jsonResponse("The OpenAPI document", ["type": "object"]))],
            "/docs": ["get": operation("Human-readable API documentation", ["description": "HTML page", "content": ["text/html": ["schema": string]]])],
            "/": [
                "get": operation(
                    "The web console's page for a browser (Accept: text/html); any other client gets the line \"modeld is running\". Needs no key",
                    ["description": "The page, or the line", "content": ["text/html": ["schema": string], "text/plain": ["schema": string]]],
                    extra: consoleNotModified),
                "head": operation("Whether the daemon is running", ["description": "Running"]),
            ],
            "/ui/{file}": [
                "get": operation(
                    "A file of the web console (CSS, JavaScript), compiled into modeld; needs no key", consoleFile,
                    parameters: [pathParameter("file", "The file's name, e.g. app.js")], extra: consoleNotModified)
            ],
            "/ui/views/{file}": [
                "get": operation(
                    "A view module of the web console; needs no key", consoleFile,
                    parameters: [pathParameter("file", "The module's name, e.g. runs.js")], extra: consoleNotModified)
            ],
            "/metrics": [
                "get": operation(
                    "Prometheus metrics: requests, durations, tokens, time to first token, runs, engine restarts, pulled bytes",
                    ["description": "Prometheus text format 0.0.4", "content": ["text/plain": ["schema": string]]])
            ],
            "/v1/models": ["get": operation("OpenAI: the models of ready runs", jsonResponse("OK", ["type": "object"]), openAI: true)],
            "/v1/chat/completions": [
                "post": operation(
                    "OpenAI chat, routed by `model` to a ready run (SSE when stream is true)",
                    ["description": "The engine's reply, relayed", "content": ["application/json": ["schema": ["type": "object"]], "text/event-stream": ["schema": string]]],
                    body: "OpenAIRequest", extra: gatewayErrors, openAI: true)
            ],
            "/v1/completions": [
                "post": operation(
                    "OpenAI completion, routed by `model`",
                    ["description": "The engine's reply, relayed", "content": ["application/json": ["schema": ["type": "object"]], "text/event-stream": ["schema": string]]],
                    body: "OpenAIRequest", extra: gatewayErrors, openAI: true)
            ],
            "/v1/embeddings": [
                "post": operation(
                    "OpenAI embeddings, routed by `model`", jsonResponse("The engine's reply, relayed", ["type": "object"]), body: "OpenAIRequest",
                    extra: gatewayErrors, openAI: true)
            ],
            "/api/v1/keys": [
                "get": operation("API keys (never their values)", jsonResponse("OK", envelope(array(ref("Key"))))),
                "post": operation(
                    "Create an API key; the value is in this answer only", jsonResponse("OK", envelope(ref("Key"))), body: "KeyCreateRequest",
                    extra: ["409": jsonResponse("The name is taken", ref("ErrorEnvelope"))]),
            ],
            "/api/v1/events": [
                "get": operation(
                    "Live events as Server-Sent Events (`id`, `event`, one JSON `data` line): run.changed, run.removed, pull.progress, pull.done, pull.failed, version.added, version.removed, key.created, key.revoked, reload. Send Last-Event-ID to get what was missed.",
                    [
                        "description": "An event stream that stays open",
                        "content": [
                            "text/event-stream": [
                                "schema": [
                                    "type": "object", "description": "One event",
                                    "properties": [
                                        "id": string, "event": ["type": "string", "enum": DaemonEventType.allCases.map(\.rawValue)],
                                        "data": ["type": "string", "description": "One JSON object"], "retry": integer,
                                    ],
                                ]
                            ]
                        ],
                    ],
                    parameters: [["name": "Last-Event-ID", "in": "header", "required": false, "description": "The id of the last event seen", "schema": string]])
            ],
            "/api/v1/status": [
                "get": operation(
                    "A summary: version, data directory use and free space, runs by state, local versions, tokens served, uptime",
                    jsonResponse("OK", envelope(ref("Status"))))
            ],
            "/api/v1/keys/{id}/revoke": [
                "post": operation("Revoke an API key", jsonResponse("OK", envelope(ref("Key"))), parameters: [pathParameter("id", "Key id or name")])
            ],
            "/api/v1/models": ["get": operation("Catalog models with their local state", jsonResponse("OK", envelope(array(ref("CatalogModel")))))],
            "/api/v1/models/resolve": ["post": operation("Which hub repository a ref names", jsonResponse("OK", envelope(ref("Resolved"))), body: "ResolveRequest")],
            "/api/v1/models/pull": [
                "post": operation(
                    "Start or join a pull; NDJSON progress events (or one envelope with ?stream=false)",
                    [
                        "description": "Progress events, one JSON object per line; the last is `done` or `error`",
                        "content": [
                            "application/x-ndjson": ["schema": ref("PullEvent")],
                            "application/json": ["schema": envelope(ref("PullEvent"))],
                        ],
                    ],
                    body: "PullRequest",
                    parameters: [queryParameter("stream", ["type": "string", "enum": ["true", "false"]], "false: wait and answer once")])
            ],
            "/api/v1/models/pulls": ["get": operation("Running pulls", jsonResponse("OK", envelope(array(ref("PullEvent")))))],
            "/api/v1/models/pulls/{id}": [
                "get": operation("One pull's current state", jsonResponse("OK", envelope(ref("PullEvent"))), parameters: [pathParameter("id", "Pull job id")])
            ],
            "/api/v1/models/pulls/{id}/cancel": [
                "post": operation(
                    "Cancel a pull", jsonResponse("OK", envelope(ref("PullEvent"))), parameters: [pathParameter("id", "Pull job id")],
                    extra: ["409": jsonResponse("Already finished", ref("ErrorEnvelope"))])
            ],
            "/api/v1/models/local": ["get": operation("Every local version", jsonResponse("OK", envelope(array(ref("LocalVersion")))))],
            "/api/v1/models/remove": ["post": operation("Remove a version (every version without revision)", jsonResponse("OK", envelope(ref("RemoveResult"))), body: "VersionSelector")],
            "/api/v1/models/verify": ["post": operation("Re-hash a version and report damage", jsonResponse("OK", envelope(array(ref("VerifyResult")))), body: "VersionSelector")],
            "/api/v1/models/start": [
                "post": operation(
                    "Start a model on an engine", jsonResponse("OK: the run, starting", envelope(ref("Run"))), body: "StartRequest",
                    extra: ["409": jsonResponse("Not pulled, or the name is taken", ref("ErrorEnvelope"))])
            ],
            "/api/v1/models/running": ["get": operation("Every run", jsonResponse("OK", envelope(array(ref("Run")))))],
            "/api/v1/models/running/{id}": ["get": operation("One run", jsonResponse("OK", envelope(ref("Run"))), parameters: [runID])],
            "/api/v1/models/running/{id}/stop": ["post": operation("Stop a run (it stays stopped)", jsonResponse("OK", envelope(ref("Run"))), parameters: [runID])],
            "/api/v1/models/running/{id}/logs": [
                "get": operation(
                    "A run's engine log; follow=true streams text lines",
                    [
                        "description": "The last lines, or a text stream",
                        "content": ["application/json": ["schema": envelope(ref("RunLogs"))], "text/plain": ["schema": string]],
                    ],
                    parameters: [
                        runID, queryParameter("tail", integer, "Lines from the end (default 100)"),
                        queryParameter("follow", ["type": "string", "enum": ["true", "false"]], "Stream new lines"),
                    ])
            ],
            "/api/v1/models/import": [
                "post": {
                    var operation = operation(
                        "Import a model archive (tar, tar.gz, tar.zst or zip with modeld-manifest.json first), streamed; every file is checked before the version is registered",
                        jsonResponse("OK: the version, ready", envelope(ref("ImportResult"))),
                        extra: [
                            "507": jsonResponse("Not enough disk space", ref("ErrorEnvelope")),
                        ])
                    operation["requestBody"] = [
                        "required": true,
                        "content": ["application/octet-stream": ["schema": ["type": "string", "format": "binary"]]],
                    ]
                    return operation
                }()
            ],
            "/api/v1/models/adopt": [
                "post": operation(
                    "Register models already on this host without copying: a Hugging Face hub cache or a plain model directory",
                    jsonResponse("OK: what was registered and what was skipped", envelope(ref("AdoptResult"))), body: "AdoptRequest")
            ],
            "/api/v1/models/{ref}/export": [
                "get": operation(
                    "A local version as an archive, streamed (modeld-manifest.json first, then the files)",
                    [
                        "description": "The archive",
                        "content": Dictionary(uniqueKeysWithValues: ["application/x-tar", "application/gzip", "application/zstd", "application/zip"].map {
                            ($0, ["schema": ["type": "string", "format": "binary"]])
                        }),
                    ],
                    parameters: [
                        pathParameter("ref", "Catalog ref or repository id, URL-encoded"),
                        queryParameter("source", ["type": "string", "enum": ["huggingface", "modelscope"]], "The hub (default huggingface)"),
                        queryParameter("revision", string, "Commit, unique prefix or revision (default: the newest ready version)"),
                        queryParameter("format", ["type": "string", "enum": ["tar", "tar.gz", "tgz", "tar.zst", "tzst", "zip"]], "Archive format (default tar.zst)"),
                    ],
                    extra: ["409": jsonResponse("The version is not ready", ref("ErrorEnvelope"))])
            ],
            "/api/v1/models/{ref}": [
                "get": operation(
                    "One model: catalog entry, local versions and runs", jsonResponse("OK", envelope(ref("ModelDetail"))),
                    parameters: [pathParameter("ref", "Catalog ref (qwen2.5:0.5b) or repository id, URL-encoded (Qwen%2FQwen2.5-0.5B-Instruct)")])
            ],
        ]

        let localVersion = object(
            [
                "repo": string, "source": string, "revision": string, "commit": string, "size_bytes": integer,
                "state": ["type": "string", "enum": ["pending", "downloading", "ready", "failed", "damaged"]],
                "path": nullableString, "error": nullableString, "created_at": dateTime, "ready_at": ["type": ["string", "null"], "format": "date-time"],
            ],
            required: ["repo", "source", "revision", "commit", "size_bytes", "state", "created_at"])
        let fileProgress = object(
            ["path": string, "completed_bytes": integer, "total_bytes": integer, "state": string],
            required: ["path", "completed_bytes", "total_bytes", "state"])
        let schemas: [String: Any] = [
            "KeyCreateRequest": object(
                ["name": string, "scope": ["type": "string", "enum": ["inference", "admin"]], "rate_per_minute": integer],
                required: ["name"]),
            "Key": object(
                [
                    "id": string, "name": string, "prefix": string, "scope": string, "rate_per_minute": nullableInteger,
                    "created_at": dateTime, "last_used_at": ["type": ["string", "null"], "format": "date-time"], "revoked": boolean,
                    "key": nullableString,
                ],
                required: ["id", "name", "prefix", "scope", "created_at", "revoked"]),
            "OpenAIRequest": ["type": "object", "required": ["model"], "properties": ["model": string], "additionalProperties": true],
            "OpenAIError": object(
                [
                    "error": object(
                        ["message": string, "type": string, "param": nullableString, "code": ["type": ["integer", "string", "null"]]],
                        required: ["message", "type"], additional: true)
                ],
                required: ["error"]),
            "ErrorEnvelope": object(
                ["request_id": string, "code": integer, "msg": string, "data": ["type": "null"]],
                required: ["request_id", "code", "msg", "data"]),
            "Health": object(["status": string, "version": string], required: ["status", "version"]),
            "Status": object(
                [
                    "version": string, "data_dir": string,
                    "data_dir_bytes": ["type": "integer", "description": "the sizes of the local versions the store records"],
                    "free_bytes": ["type": "integer", "description": "free bytes for an unprivileged user on the data directory's file system"],
                    "total_bytes": ["type": "integer", "description": "the size of the data directory's file system"],
                    "runs": object(
                        Dictionary(uniqueKeysWithValues: RunState.allCases.map { ($0.rawValue, integer) }),
                        required: RunState.allCases.map(\.rawValue)),
                    "versions": integer,
                    "tokens_served": object(["prompt": integer, "completion": integer], required: ["prompt", "completion"]),
                    "uptime_seconds": integer,
                ],
                required: ["version", "data_dir", "data_dir_bytes", "runs", "versions", "tokens_served", "uptime_seconds"]),
            "LocalVersion": localVersion,
            "CatalogModel": object(
                [
                    "id": string, "name": string, "description": string, "official_url": string,
                    "sizes": array(
                        object(
                            [
                                "size": string, "ref": string, "hf_repo": string, "modelscope_id": nullableString,
                                "ollama_name": nullableString, "state": string, "versions": array(ref("LocalVersion")),
                            ],
                            required: ["size", "ref", "hf_repo", "state", "versions"])),
                    "quantizations": array(string), "engines": array(string), "formats": array(string), "default_engine": string,
                ],
                required: ["id", "name", "description", "official_url", "sizes", "quantizations", "engines", "formats", "default_engine"]),
            "ResolveRequest": object(["model": string, "source": string], required: ["model"]),
            "Resolved": object(
                ["model": string, "source": string, "repo": string, "catalog_ref": nullableString, "default_engine": nullableString],
                required: ["model", "source", "repo"]),
            "PullRequest": object(
                ["model": string, "source": string, "revision": string, "include": array(string), "exclude": array(string)],
                required: ["model"]),
            "PullEvent": object(
                [
                    "event": ["type": "string", "enum": ["status", "progress", "file", "done", "error"]],
                    "job_id": string, "source": string, "repo": string, "revision": string, "commit": nullableString,
                    "state": ["type": "string", "enum": ["queued", "resolving", "downloading", "ready", "failed", "cancelled"]],
                    "completed_bytes": integer, "total_bytes": integer, "files_done": integer, "files_total": integer,
                    "bytes_per_second": ["type": ["number", "null"]], "eta_seconds": ["type": ["number", "null"]],
                    "file": fileProgress, "active_files": array(fileProgress), "path": nullableString,
                    "error": object(["code": string, "message": string], required: ["code", "message"]),
                    "already_present": boolean, "time": dateTime,
                ],
                required: ["event", "job_id", "source", "repo", "revision", "state", "completed_bytes", "total_bytes", "files_done", "files_total", "time"]),
            "VersionSelector": object(["model": string, "source": string, "revision": string], required: ["model"]),
            "RemoveResult": object(["removed": array(ref("LocalVersion"))], required: ["removed"]),
            "VerifyResult": object(
                [
                    "repo": string, "source": string, "commit": string, "files_checked": integer, "bytes_checked": integer,
                    "intact": boolean, "damage": array(string),
                ],
                required: ["repo", "source", "commit", "files_checked", "bytes_checked", "intact", "damage"]),
            "StartRequest": object(
                [
                    "model": string, "engine": ["type": "string", "enum": ["builtin", "vllm", "sglang", "ollama"]], "name": string,
                    "revision": string, "source": string, "gpus": string, "tensor_parallel": integer, "memory_fraction": number,
                    "max_context": integer, "engine_args": array(string),
                    "keep_alive": [
                        "oneOf": [["type": "string", "pattern": "^(never|-1|[0-9]+|([0-9]+h)?([0-9]+m)?([0-9]+s)?)$"], ["type": "integer", "minimum": -1]],
                        "description": "unload after this long without requests: 30s, 10m, 1h30m, seconds, or never (the default for explicit starts)",
                    ],
                ],
                required: ["model"]),
            "Run": object(
                [
                    "run_id": string, "name": string, "model": string, "engine": string,
                    "state": ["type": "string", "enum": ["starting", "ready", "stopping", "stopped", "failed"]],
                    "desired_state": ["type": "string", "enum": ["running", "stopped"]],
                    "pid": nullableInteger, "port": nullableInteger, "endpoint": nullableString, "served_name": string,
                    "restarts": integer, "exit_status": nullableInteger, "reason": nullableString,
                    "keep_alive": ["type": "integer", "minimum": 0, "description": "seconds without requests before the run is unloaded; absent: kept until stopped"],
                    "on_demand": ["type": "boolean", "description": "started by the gateway for a request"],
                    "last_used_at": ["type": "string", "format": "date-time", "description": "when its last request ended (loaded runs)"],
                    "created_at": dateTime, "updated_at": dateTime,
                ],
                required: ["run_id", "name", "model", "engine", "state", "desired_state", "served_name", "restarts", "on_demand", "created_at", "updated_at"]),
            "RunLogs": object(["run_id": string, "lines": array(string)], required: ["run_id", "lines"]),
            "ImportResult": object(["version": ref("LocalVersion"), "files": integer, "bytes": integer], required: ["version", "files", "bytes"]),
            "AdoptRequest": object(
                ["path": string, "kind": ["type": "string", "enum": ["hf-cache", "dir"]], "name": string, "revision": string],
                required: ["path", "kind"]),
            "AdoptResult": object(
                [
                    "adopted": array(ref("LocalVersion")),
                    "skipped": array(object(["path": string, "reason": string], required: ["path", "reason"])),
                    "linked_bytes": integer, "copied_bytes": integer,
                ],
                required: ["adopted", "skipped", "linked_bytes", "copied_bytes"]),
            "ModelDetail": object(
                [
                    "ref": string, "source": string, "repo": string, "catalog": ["oneOf": [ref("CatalogModel"), ["type": "null"]]],
                    "versions": array(ref("LocalVersion")), "runs": array(ref("Run")),
                ],
                required: ["ref", "source", "repo", "versions", "runs"]),
        ]
        let document: [String: Any] = [
            "openapi": "3.1.0",
            "info": [
                "title": "modeld management API", "version": "0.1.0",
                "description": "Pull, store, run and supervise LLM inference engines. Every reply but streams is an envelope {request_id, code, msg, data}.",
            ],
            "servers": [["url": "http://127.0.0.1:8700"]],
            "paths": paths.merging(llmPaths) { current, _ in current },
            "components": ["schemas": schemas.merging(llmSchemas) { current, _ in current }],
        ]
        return (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
    }()

    // MARK: The LLM API

    private static var llmPaths: [String: Any] {
        let engineErrors: [String: Any] = [
            "409": jsonResponse("The run named by run_id is not ready", ref("ErrorEnvelope")),
            "413": jsonResponse("The body is larger than 32 MiB", ref("ErrorEnvelope")),
            "502": jsonResponse("The engine failed or did not answer", ref("ErrorEnvelope")),
            "503": jsonResponse("An on-demand start failed", ref("ErrorEnvelope")),
        ]
        func streaming(_ reply: String) -> [String: Any] {
            [
                "description": "The reply in the envelope; with stream true, NDJSON events: deltas, then one done event",
                "content": ["application/json": ["schema": envelope(ref(reply))], "application/x-ndjson": ["schema": ref("LLMStreamEvent")]],
            ]
        }
        return [
            "/api/v1/llm/generate": [
                "post": operation(
                    "Complete a prompt on a run (by run_id) or a model (routed, started on demand)", streaming("LLMGeneration"),
                    body: "LLMGenerateRequest", extra: engineErrors)
            ],
            "/api/v1/llm/chat": [
                "post": operation(
                    "Answer a conversation on a run (by run_id) or a model (routed, started on demand)", streaming("LLMChatReply"),
                    body: "LLMChatRequest", extra: engineErrors)
            ],
            "/api/v1/llm/structured-generate": [
                "post": operation(
                    "JSON output constrained to a schema (vLLM, SGLang, Ollama; 400 for the built-in engine)",
                    jsonResponse("OK", envelope(ref("LLMStructuredReply"))), body: "LLMStructuredRequest", extra: engineErrors)
            ],
            "/api/v1/llm/count-tokens": [
                "post": operation(
                    "Count tokens with the model's own tokenizer (no engine needed)", jsonResponse("OK", envelope(ref("TokenCount"))),
                    body: "TokenCountRequest")
            ],
        ]
    }

    private static var llmSchemas: [String: Any] {
        let target: [String: [String: Any]] = [
            "run_id": ["type": "string", "description": "A run id or name; the run must be ready"],
            "model": ["type": "string", "description": "A run name, served name, catalog ref or repository id"],
        ]
        let sampling: [String: [String: Any]] = [
            "max_tokens": integer, "temperature": number, "top_p": number, "seed": integer,
            "stop": ["oneOf": [string, array(string)]], "stream": boolean,
        ]
        let nullableUsage: [String: Any] = ["oneOf": [ref("LLMUsage"), ["type": "null"]]]
        func request(_ fields: [String: [String: Any]], required: [String]) -> [String: Any] {
            // Further fields go to the engine untouched.
            object(target.merging(sampling) { $1 }.merging(fields) { $1 }, required: required, additional: true)
        }
        return [
            "LLMMessage": object(["role": string, "content": string], required: ["role", "content"]),
            "LLMUsage": object(
                ["prompt_tokens": integer, "completion_tokens": integer, "total_tokens": integer],
                required: ["prompt_tokens", "completion_tokens", "total_tokens"]),
            "LLMGenerateRequest": request(["prompt": string], required: ["prompt"]),
            "LLMChatRequest": request(["messages": array(ref("LLMMessage"))], required: ["messages"]),
            "LLMStructuredRequest": request(
                [
                    "prompt": string, "messages": array(ref("LLMMessage")), "schema": ["type": "object", "description": "A JSON Schema"],
                    "schema_name": string,
                ],
                required: ["schema"]),
            "TokenCountRequest": object(
                target.merging(["text": string, "messages": array(ref("LLMMessage")), "add_generation_prompt": boolean]) { $1 }, required: []),
            "LLMGeneration": object(
                ["run_id": string, "model": string, "text": string, "finish_reason": nullableString, "usage": nullableUsage],
                required: ["run_id", "model", "text", "finish_reason", "usage"]),
            "LLMChatReply": object(
                ["run_id": string, "model": string, "message": ref("LLMMessage"), "finish_reason": nullableString, "usage": nullableUsage],
                required: ["run_id", "model", "message", "finish_reason", "usage"]),
            "LLMStructuredReply": object(
                [
                    "run_id": string, "model": string, "text": string,
                    "json": ["description": "text parsed as JSON; null when it does not parse"],
                    "json_error": nullableString, "finish_reason": nullableString, "usage": nullableUsage,
                ],
                required: ["run_id", "model", "text", "json", "json_error", "finish_reason", "usage"]),
            "LLMStreamEvent": object(
                [
                    "delta": string, "done": boolean, "run_id": string, "model": string, "finish_reason": nullableString,
                    "usage": ref("LLMUsage"), "error": string,
                ],
                required: []),
            "TokenCount": object(
                ["model": string, "run_id": nullableString, "tokens": integer, "ids": array(integer)],
                required: ["model", "run_id", "tokens", "ids"]),
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
