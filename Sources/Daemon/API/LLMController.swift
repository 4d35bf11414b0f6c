import Catalog
import Foundation
import Hubs
import Hummingbird
import Launchers
import Logging
import ModelStore
import ModelText
import ModeldAPI
import NIOCore
import Transfer

/// The LLM API (`/api/v1/llm/*`), in the management envelope:
///
/// | route | what |
/// |---|---|
/// | `POST /api/v1/llm/generate` | complete `prompt` (the engine's `/v1/completions`) |
/// | `POST /api/v1/llm/chat` | answer `messages` (the engine's `/v1/chat/completions`) |
/// | `POST /api/v1/llm/structured-generate` | JSON constrained to `schema` (every engine constrains decoding) |
/// | `POST /api/v1/llm/count-tokens` | count with the model's own tokenizer; needs no running engine |
///
/// A request names its run by `run_id` (a run id or name, which must be ready) or by `model`, routed as the
/// OpenAI gateway routes it (least busy ready run, else an on-demand start). The body goes to the engine with
/// the fields it does not know about untouched and in their order (`ignore_eos`, `top_k`, a schema's
/// properties); `stream: true` answers NDJSON ``LLMStreamEvent`` lines. The earlier service's field names are
/// accepted too (``RawBody/takeOlderNames()``, docs/older-api.md).
struct LLMController {
    typealias Context = DaemonRequestContext
    let scheduler: RunScheduler
    /// Counts the tokens of replies and their time to first token, as the gateway's.
    let metrics: DaemonMetrics
    /// Records each request's usage.
    let usage: UsageLedger
    let tokenizers = TokenizerCache()
    /// The model of requests that name none, on the routes of the earlier services (the `default_model` setting).
    var defaultModel: String? = nil

    var supervisor: Supervisor { scheduler.supervisor }
    var catalog: ModelCatalog { scheduler.catalog }
    var store: Store { scheduler.store }

    func addRoutes(to group: RouterGroup<Context>) {
        group.post("generate", use: generate)
        group.post("chat", use: chat)
        group.post("structured-generate", use: structuredGenerate)
        group.post("count-tokens", use: countTokens)
    }

    @Sendable func generate(_ request: Request, context: Context) async throws -> Response {
        let started = ContinuousClock.now
        var body = try await RawBody.read(request)
        let engine = try body.takeOlderNames()
        let fields = try APIError.decodeJSON(as: LLMGenerateRequest.self, from: body.data)
        guard !fields.prompt.isEmpty else { throw APIError.badRequest("prompt must not be empty") }
        let lease = try await target(runID: fields.runID, model: fields.model, key: context.apiKey, prefer: engine)
        let run = lease.run
        let call = engineCall(
            lease, "/v1/completions", .completion, body: body.object, stream: fields.stream == true, started: started, route: request.uri.path,
            context: context)
        if call.stream { return try await call.streamed() }
        let reply = try await call.reply()
        return try Envelope(
            requestID: context.id,
            data: LLMGeneration(runID: run.runID, model: run.model, text: reply.text, finishReason: reply.finishReason, usage: reply.usage)
        ).response(from: request, context: context)
    }

    @Sendable func chat(_ request: Request, context: Context) async throws -> Response {
        let started = ContinuousClock.now
        var body = try await RawBody.read(request)
        let engine = try body.takeOlderNames()
        let fields = try APIError.decodeJSON(as: LLMChatRequest.self, from: body.data)
        guard !fields.messages.isEmpty else { throw APIError.badRequest("messages must not be empty") }
        let lease = try await target(runID: fields.runID, model: fields.model, key: context.apiKey, prefer: engine)
        let run = lease.run
        let call = engineCall(
            lease, "/v1/chat/completions", .chat, body: body.object, stream: fields.stream == true, started: started, route: request.uri.path,
            context: context)
        if call.stream { return try await call.streamed() }
        let reply = try await call.reply()
        return try Envelope(
            requestID: context.id,
            data: LLMChatReply(
                runID: run.runID, model: run.model, message: LLMMessage(role: "assistant", content: reply.text),
                finishReason: reply.finishReason, usage: reply.usage)
        ).response(from: request, context: context)
    }

    @Sendable func structuredGenerate(_ request: Request, context: Context) async throws -> Envelope<LLMStructuredReply> {
        let started = ContinuousClock.now
        var raw = try await RawBody.read(request)
        let engine = try raw.takeOlderNames()
        if case .object(let given)? = raw.object["schema"], let expanded = try SchemaShorthand.expand(given) {
            raw.replace("schema", with: .object(expanded))
        }
        let fields = try APIError.decodeJSON(as: LLMStructuredRequest.self, from: raw.data)
        guard fields.schema.objectValue != nil, let schema = raw.object["schema"] else {
            throw APIError.badRequest("schema must be a JSON Schema object")
        }
        if case .bool(true)? = raw.object["stream"] { throw APIError.badRequest("structured-generate does not stream: leave out stream") }
        var body = raw.object
        switch (fields.prompt, fields.messages) {
        case (let prompt?, nil):
            guard !prompt.isEmpty else { throw APIError.badRequest("prompt must not be empty") }
            body["prompt"] = nil
            body["messages"] = [["role": "user", "content": .string(prompt)]]
        case (nil, let messages?):
            guard !messages.isEmpty else { throw APIError.badRequest("messages must not be empty") }
        default:
            throw APIError.badRequest("give prompt or messages (one of them)")
        }
        let name = fields.schemaName ?? "output"
        body["schema"] = nil
        body["schema_name"] = nil
        body["response_format"] = ["type": "json_schema", "json_schema": ["name": .string(name), "schema": schema]]
        // Every engine takes the schema as OpenAI's `response_format` on chat completions (docs/design/engine-launch.md,
        // OpenAI-compatible endpoints and structured output; docs/builtin-engine.md, Structured output).
        let lease = try await target(runID: fields.runID, model: fields.model, key: context.apiKey, prefer: engine)
        let run = lease.run
        let reply = try await engineCall(
            lease, "/v1/chat/completions", .chat, body: body, stream: false, started: started, route: request.uri.path, context: context
        ).reply()
        var json: JSONValue?
        var jsonError: String?
        do {
            json = try JSONLimits.decode(JSONValue.self, from: Data(reply.text.utf8))
        } catch {
            jsonError =
                reply.finishReason == "length"
                ? "the output is not valid JSON: it was cut off at max_tokens (finish_reason length)"
                : "the output is not valid JSON"
        }
        return Envelope(
            requestID: context.id,
            data: LLMStructuredReply(
                runID: run.runID, model: run.model, text: reply.text, json: json, jsonError: jsonError,
                finishReason: reply.finishReason, usage: reply.usage))
    }

    @Sendable func countTokens(_ request: Request, context: Context) async throws -> Envelope<TokenCount> {
        Envelope(requestID: context.id, data: try await count(try await RawBody.read(request)))
    }

    /// Counts a `count-tokens` body's text or messages.
    func count(_ raw: RawBody) async throws -> TokenCount {
        let fields = try APIError.decodeJSON(as: TokenCountRequest.self, from: raw.data)
        switch (fields.text, fields.messages) {
        case (_?, nil): break
        case (nil, let messages?) where !messages.isEmpty: break
        case (nil, _?): throw APIError.badRequest("messages must not be empty")
        default: throw APIError.badRequest("give text or messages (one of them)")
        }
        let snapshot = try await snapshot(runID: fields.runID, model: fields.model)
        let entry: TokenizerCache.Entry
        do {
            entry = try await tokenizers.load(snapshot.path)
        } catch let error as TokenizerError {
            let file = URL(filePath: snapshot.path).appending(path: "tokenizer.json").path
            guard FileManager.default.fileExists(atPath: file) else {
                throw APIError.badRequest("\(snapshot.model) has no tokenizer.json in \(snapshot.path): its tokens cannot be counted here")
            }
            throw APIError.badRequest("the tokenizer of \(snapshot.model) cannot be loaded: \(error.message)")
        }
        var text = fields.text ?? ""
        if let messages = fields.messages {
            let template: ChatTemplate
            do {
                template = try entry.template.get()
            } catch {
                throw APIError.badRequest("\(snapshot.model) has no chat template, so messages cannot be counted: count text instead")
            }
            do {
                text = try template.render(
                    messages: messages.map { .object(JinjaObject(["role": .string($0.role), "content": .string($0.content)])) },
                    addGenerationPrompt: fields.addGenerationPrompt ?? true)
            } catch {
                throw APIError.badRequest("the chat template of \(snapshot.model) rejected the messages: \(error)")
            }
        }
        let ids: [Int]
        do {
            ids = try entry.tokenizer.encode(text)
        } catch {
            throw APIError.badRequest("\(snapshot.model)'s tokenizer cannot encode the text: \(error)")
        }
        return TokenCount(model: snapshot.model, runID: snapshot.runID, tokens: ids.count, ids: ids)
    }
}

// MARK: - Which run, which model directory

extension LLMController {
    /// - Parameters:
    ///   - started: when the request arrived.
    ///   - route: the request's path, and `context` its key, for its usage row.
    func engineCall(
        _ lease: RunLease, _ path: String, _ kind: EngineCall.Kind, body: JinjaObject, stream: Bool, started: ContinuousClock.Instant,
        route: String, context: Context
    ) -> EngineCall {
        let ticket = UsageTicket(
            ledger: usage, keyID: context.apiKey?.id, model: lease.run.model, backend: UsageTicket.backend(run: lease.run.name),
            route: route, started: started)
        return EngineCall(lease: lease, path: path, kind: kind, body: body, stream: stream, metrics: metrics, started: started, ticket: ticket)
    }

    /// What a request names: a run (`run_id`, a run id or name) or a model.
    private enum Named {
        case run(String)
        case model(String)
    }

    /// - Throws: 400 unless exactly one of `run_id` and `model` is given.
    private func named(runID: String?, model: String?) throws -> Named {
        switch (runID.flatMap(\.nonEmpty), model.flatMap(\.nonEmpty)) {
        case (let id?, nil): .run(id)
        case (nil, let model?): .model(model)
        case (.some, .some): throw APIError.badRequest("give run_id or model, not both")
        case (nil, nil): throw APIError.badRequest("run_id (a run id or name) or model is required")
        }
    }

    /// The run with this id or name, in any state. - Throws: 404 when there is none.
    private func run(_ id: String) async throws -> RunInfo {
        do {
            return try await supervisor.get(id)
        } catch let error as LaunchError where error.code == .runNotFound {
            throw APIError.notFound("no run \(id): `modelctl ps` lists the runs")
        }
    }

    /// A lease on the run a request names: `run_id` (which must be ready), or `model` routed as the gateway routes
    /// it. A key with an allowed-models list may name a model on it, or a run whose name or model is on it.
    /// - Parameter engine: for `model`, the engine whose ready runs are preferred (the earlier `engine_type`).
    func target(runID: String?, model: String?, key: APIKeyRecord?, prefer engine: EngineKind? = nil) async throws -> RunLease {
        switch try named(runID: runID, model: model) {
        case .run(let id):
            let run = try await self.run(id)
            if let key, !key.allows(model: run.name) { try Authorizer.check(model: run.model, for: key) }
            guard run.state == .ready, run.endpoint != nil, let lease = scheduler.acquire(run: run) else {
                let why = run.reason.map { " (\($0))" } ?? ""
                let state = run.state == .ready ? "being unloaded" : run.state.rawValue
                let hint = run.state == .starting ? "wait until `modelctl ps` shows it ready" : "start it with `modelctl start \(run.model)`"
                throw APIError(.conflict, "run \(run.name) is \(state)\(why), not ready: \(hint)")
            }
            return lease
        case .model(let model):
            try Authorizer.check(model: model, for: key)
            return try await scheduler.acquire(model, prefer: { engine == nil || $0.engine == engine })
        }
    }

    /// The model directory whose tokenizer counts: a run's (by `run_id`, or a run that `model` names), else the
    /// newest ready pulled version of `model`. No engine needs to run.
    private func snapshot(runID: String?, model: String?) async throws -> (path: String, model: String, runID: String?) {
        switch try named(runID: runID, model: model) {
        case .run(let id):
            let run = try await self.run(id)
            guard let path = run.modelPath else {
                throw APIError.badRequest(
                    "run \(run.name) is on \(run.engine.displayName), whose model has no tokenizer.json here: name a pulled model instead")
            }
            return (path, run.model, run.runID)
        case .model(let model):
            let runs = await supervisor.list().filter { RunScheduler.matches($0, model) && $0.modelPath != nil }
            if let run = runs.first(where: { $0.state == .ready }) ?? runs.first, let path = run.modelPath {
                return (path, run.model, run.runID)
            }
            let resolved = try ModelsController.resolve(catalog, model: model, source: .huggingface)
            var candidates = [resolved]
            if let other = try? catalog.resolve(ModelRef(parsing: model), source: .modelscope) { candidates.append(other) }
            for candidate in candidates {
                let versions = try await store.versions(source: candidate.source.rawValue, repo: candidate.repo)
                if let path = versions.first(where: { $0.version.state == .ready })?.version.path {
                    return (path, model, nil)
                }
            }
            throw APIError.notFound("model \(model) is not pulled on this host: `modelctl pull \(model)` first")
        }
    }
}

// MARK: - The request body

/// A request body as raw bytes and as an ordered JSON object: the typed decode checks the fields, the ordered
/// object is what goes to the engine (unknown fields and key order kept).
struct RawBody {
    var data: Data
    var object: JinjaObject

    init(data: Data, object: JinjaObject) {
        self.data = data
        self.object = object
    }

    /// - Parameters:
    ///   - allowEmpty: an empty body reads as an empty object (for routes whose fields are all optional).
    ///   - limit: the largest body read, in bytes.
    static func read(_ request: Request, allowEmpty: Bool = false, limit: Int = GatewayController.maxBody) async throws -> RawBody {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch {
            let size = limit % (1 << 20) == 0 ? "\(limit >> 20) MiB" : "\(limit) bytes"
            throw APIError(.contentTooLarge, "the request body is larger than \(size)")
        }
        return try RawBody(buffer, allowEmpty: allowEmpty)
    }

    /// A body already read.
    /// - Throws: 400 when it is not a JSON object.
    init(_ buffer: ByteBuffer, allowEmpty: Bool = false) throws {
        let bytes = Array(buffer.readableBytesView)
        if allowEmpty, bytes.isEmpty {
            self.init(data: Data("{}".utf8), object: JinjaObject())
            return
        }
        do {
            try JSONLimits.check(bytes)
        } catch {
            throw APIError.badRequest("malformed JSON body: \(error.message)")
        }
        guard case .object(let object)? = try? JinjaValue(json: bytes) else {
            let isJSON = (try? JSONSerialization.jsonObject(with: Data(bytes), options: .fragmentsAllowed)) != nil
            throw APIError.badRequest(isJSON ? "the body must be a JSON object" : "malformed JSON body")
        }
        self.init(data: Data(bytes), object: object)
    }
}

extension RawBody {
    /// Sets a field of the object, and the bytes to match.
    mutating func replace(_ key: String, with value: JinjaValue?) {
        object[key] = value
        data = Data(((try? JinjaValue.object(object).pythonJSON()) ?? "{}").utf8)
    }

    /// Moves a field given under an older name to its current one.
    /// - Throws: 400 when both are given.
    mutating func rename(_ older: String, to current: String) throws {
        guard let value = object[older] else { return }
        guard object[current] == nil else { throw APIError.badRequest("give \(current) or its older name \(older), not both", field: older) }
        object[older] = nil
        replace(current, with: value)
    }

    /// The LLM API's fields under the earlier service's names (docs/older-api.md): `model_name` for `model`, and
    /// `engine_type`, the engine whose runs are preferred, which is taken out of the body.
    /// - Returns: the engine `engine_type` names, if given.
    /// - Throws: 400 for an engine modeld does not know.
    mutating func takeOlderNames() throws -> EngineKind? {
        try rename("model_name", to: "model")
        guard let given = object["engine_type"] else { return nil }
        guard case .string(let name) = given, let engine = EngineKind(rawValue: name.lowercased()) else {
            throw APIError.badRequest(
                "engine_type must be one of \(EngineKind.allCases.map(\.rawValue).joined(separator: ", "))", field: "engine_type")
        }
        replace("engine_type", with: nil)
        return engine
    }
}

extension String {
    fileprivate var nonEmpty: String? { isEmpty ? nil : self }
}
