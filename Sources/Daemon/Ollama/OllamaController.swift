import Catalog
import Downloads
import Foundation
import Hubs
import Hummingbird
import Launchers
import Logging
import ModelStore
import ModelText
import ModeldAPI
import NIOCore

/// Ollama's REST API (docs/ollama-api.md), on the daemon's listener and on `ollama_listen`:
///
/// | route | what |
/// |---|---|
/// | `GET /api/version` | the Ollama version whose API this matches |
/// | `GET /api/tags` | every ready local version |
/// | `GET /api/ps` | the loaded runs |
/// | `POST /api/show` | a model's details, `model_info`, template, parameters and capabilities |
/// | `POST /api/chat`, `POST /api/generate` | the run's `/v1/chat/completions` (or `/v1/completions` for a raw prompt), as NDJSON |
/// | `POST /api/embed`, `POST /api/embeddings` | the run's `/v1/embeddings` |
/// | `POST /api/pull` | a pull, with Ollama's progress lines |
/// | `DELETE /api/delete`, `POST /api/copy` | remove a model, name it again |
/// | `/api/create`, `/api/push`, `/api/blobs/*` | 501, naming the modeld way |
///
/// Every error is `{"error": "..."}`.
struct OllamaController {
    typealias Context = DaemonRequestContext
    let backend: OllamaBackend
    let catalog: ModelCatalog
    let store: Store
    let pulls: PullService
    let pullEvents: PullEventSource
    let aliases: OllamaAliases
    let metrics: DaemonMetrics
    /// Records each request's usage.
    let usage: UsageLedger
    let facts = OllamaFactsCache()

    /// The Ollama release whose API this one matches (docs/ollama-api.md, Version).
    static let version = "0.32.15"

    /// The routes an inference-scope key may call; the others need an admin key.
    static let inferencePaths: Set<String> = [
        "/api/version", "/api/tags", "/api/ps", "/api/show", "/api/chat", "/api/generate", "/api/embed", "/api/embeddings",
    ]

    /// Whether a path is one of Ollama's (its errors are Ollama's shape).
    static func owns(_ path: String) -> Bool {
        path.hasPrefix("/api/") && !path.hasPrefix("/api/v1/") && !LLMController.olderInferencePaths.contains(path) || path == "/api"
    }

    init(daemon: DaemonContext, gateway: GatewayController) {
        backend = OllamaBackend(scheduler: daemon.scheduler)
        catalog = daemon.catalog
        store = daemon.store
        pulls = daemon.pulls
        pullEvents = daemon.pullEvents
        aliases = OllamaAliases(file: daemon.configuration.dataDirectory.root.appending(path: "ollama-aliases.json"))
        metrics = daemon.metrics
        usage = daemon.usage
    }

    /// - Parameter olderPrompt: answers an `/api/generate` body without `model` (or `name`), the earlier RAG
    ///   service's shape (``LLMController/olderPrompt(_:context:)``); nil answers it as Ollama does (400).
    func addRoutes(to router: Router<Context>, olderPrompt: (@Sendable (ByteBuffer, Context) async -> Response)? = nil) {
        router.get("/api/version") { _, _ in OllamaJSON.response(["version": Self.version]) }
        router.head("/api/version") { _, _ in Response(status: .ok) }
        router.get("/api/tags") { _, _ in try await tags() }
        router.head("/api/tags") { _, _ in Response(status: .ok) }
        router.get("/api/ps") { _, _ in try await ps() }
        router.post("/api/show") { request, _ in try await show(request) }
        router.post("/api/chat") { request, context in try await chat(request, context: context) }
        router.post("/api/generate") { request, context in try await generate(request, context: context, olderPrompt: olderPrompt) }
        router.post("/api/embed") { request, context in try await embed(request, context: context, legacy: false) }
        router.post("/api/embeddings") { request, context in try await embed(request, context: context, legacy: true) }
        router.post("/api/pull") { request, context in try await pull(request, context: context) }
        router.delete("/api/delete") { request, context in try await delete(request, context: context) }
        router.post("/api/copy") { request, _ in try await copy(request) }
        let unsupported: [(String, String)] = [
            (
                "/api/create",
                "modeld does not build models from Modelfiles: pull one from Hugging Face or ModelScope (`modelctl pull`, or /api/pull) or adopt a local directory (`modelctl adopt`)"
            ),
            ("/api/push", "modeld does not push models to a registry: `modelctl export` writes a model to an archive another host can import"),
            (
                "/api/blobs/:digest",
                "modeld does not take blobs: adopt a local model directory with `modelctl adopt`, or import an archive with `modelctl import`"
            ),
        ]
        for (path, message) in unsupported {
            let path = RouterPath(path)
            router.post(path) { _, _ in OllamaError(.notImplemented, message).response }
            router.head(path) { _, _ in OllamaError(.notImplemented, message).response }
        }
    }

    /// The routes of the Ollama listener alone: Ollama's `/` answer, then the API.
    func addListenerRoutes(to router: Router<Context>) {
        router.get("/") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: "Ollama is running")))
        }
        router.head("/") { _, _ in Response(status: .ok) }
        addRoutes(to: router)
    }

    // MARK: Models

    private func library() async throws -> OllamaLibrary {
        OllamaLibrary(versions: try await store.localVersions(), catalog: catalog, aliases: aliases.all)
    }

    private func tags() async throws -> Response {
        let models = try await library().models.map { model in
            [
                "name": model.name.description, "model": model.name.description,
                "modified_at": OllamaJSON.time(model.version.version.readyAt ?? model.version.version.updatedAt),
                "size": model.version.version.totalBytes, "digest": model.version.version.commit,
                "details": facts.facts(model.version.version.path!).details,
            ] as [String: Any]
        }
        return OllamaJSON.response(["models": models])
    }

    private func ps() async throws -> Response {
        let versions = try await store.localVersions()
        let runs = backend.loadedRuns.filter { $0.state == .ready }
        var expiresAt: [String: Date] = [:]
        for run in runs { expiresAt[run.runID] = await backend.expiresAt(run.runID) }
        let models = runs.map { run -> [String: Any] in
            let name = OllamaNames.display(runModel: run.model, catalog: catalog).description
            let version = versions.first { $0.version.path != nil && $0.version.path == run.modelPath }
            let facts = run.modelPath.map { self.facts.facts($0) } ?? OllamaModelFacts(path: "")
            let size = version?.version.totalBytes ?? 0
            return [
                "name": name, "model": name, "size": size, "digest": version?.version.commit ?? "", "details": facts.details,
                "expires_at": OllamaJSON.time(expiresAt[run.runID] ?? .distantFuture),
                // Engines on the CPU hold nothing in a GPU's memory; vLLM and SGLang hold the model there.
                "size_vram": run.engine == .builtin ? 0 : size, "context_length": facts.contextLength ?? 0,
            ]
        }
        return OllamaJSON.response(["models": models])
    }

    private func show(_ request: Request) async throws -> Response {
        let body = try await Self.body(request)
        let name = try Self.modelName(body)
        let directory: String
        var modified: Date?
        if let model = try await library().find(try resolvedAlias(name)) {
            directory = model.version.version.path!
            modified = model.version.version.readyAt
        } else if let run = backend.loadedRuns.first(where: { RunScheduler.matches($0, name.routeModel) }), let path = run.modelPath {
            directory = path
        } else {
            throw OllamaError.modelNotFound(name.given)
        }
        let facts = facts.facts(directory)
        var reply: [String: Any] = [
            "modelfile": "# Modelfile generated by modeld\nFROM \(directory)\n", "parameters": facts.parametersText,
            "template": facts.template ?? "", "details": facts.details, "model_info": facts.modelInfo, "capabilities": facts.capabilities,
        ]
        if let modified { reply["modified_at"] = OllamaJSON.time(modified) }
        return OllamaJSON.response(reply)
    }

    private func copy(_ request: Request) async throws -> Response {
        let body = try await Self.body(request)
        guard let sourceText = body["source"] as? String, !sourceText.isEmpty else { throw OllamaError(.badRequest, "source is required") }
        guard let destinationText = body["destination"] as? String, !destinationText.isEmpty else {
            throw OllamaError(.badRequest, "destination is required")
        }
        let source = try OllamaName(parsing: sourceText), destination = try OllamaName(parsing: destinationText)
        let library = try await library()
        guard let original = library.find(try resolvedAlias(source)) else { throw OllamaError(.notFound, "model \"\(sourceText)\" not found") }
        if let existing = library.find(destination), aliases.all[destination.key] == nil {
            throw OllamaError(.badRequest, "\(destination) is the name of \(existing.version.model.repo): choose another destination")
        }
        try aliases.set(destination, to: original.name)
        return Response(status: .ok)
    }

    private func delete(_ request: Request, context: Context) async throws -> Response {
        let body = try await Self.body(request)
        let name = try Self.modelName(body)
        if try aliases.remove(name) { return Response(status: .ok) }
        guard let model = try await library().find(name) else { throw OllamaError(.notFound, "model \"\(name)\" not found") }
        // A repository's newest name (`:latest` or its catalog ref) stands for all its versions; an older
        // version's tag for that version alone.
        let all = try await store.versions(source: model.version.model.source, repo: model.version.model.repo)
        let chosen =
            name.key == OllamaNames.versionTag(model.version).lowercased() || model.name.tag != OllamaName.latest && model.name.isRepository
            ? [model.version] : all
        // Its runs go first, as keep_alive 0 unloads them: an engine must not be left on removed files.
        try await backend.unload(model.routeModel)
        for version in chosen {
            guard let source = ModelSource(rawValue: version.model.source) else { continue }
            do {
                try await pulls.remove(source: source, repo: version.model.repo, commit: version.version.commit)
            } catch let error as PullError {
                throw OllamaError(error.apiError.httpStatus, error.message)
            }
            pullEvents.bus.publish(.versionRemoved, LocalVersionInfo(version))
        }
        try aliases.removeAll(pointingTo: model.name)
        context.logger.info("model deleted (Ollama API)", metadata: ["repo": "\(model.version.model.repo)", "versions": "\(chosen.count)"])
        return Response(status: .ok)
    }

    /// The name an alias stands for, or the name itself.
    func resolvedAlias(_ name: OllamaName) throws -> OllamaName {
        guard let target = aliases.all[name.key] else { return name }
        return try OllamaName(parsing: target)
    }

    // MARK: Requests

    /// A request's JSON object.
    /// - Throws: ``OllamaError`` (400, or 413 for a body over the gateway's limit).
    static func body(_ request: Request) async throws -> [String: Any] {
        try object(try await buffer(request))
    }

    /// A request's body, up to the gateway's limit.
    static func buffer(_ request: Request) async throws -> ByteBuffer {
        do {
            return try await request.body.collect(upTo: GatewayController.maxBody)
        } catch {
            throw OllamaError(.contentTooLarge, "the request body is larger than \(GatewayController.maxBody >> 20) MiB")
        }
    }

    /// A body's JSON object; an empty body is an empty object.
    /// - Throws: ``OllamaError`` (400).
    static func object(_ buffer: ByteBuffer) throws -> [String: Any] {
        if buffer.readableBytes == 0 { return [:] }
        let bytes = Array(buffer.readableBytesView)
        do {
            try JSONLimits.check(bytes)
        } catch {
            throw OllamaError(.badRequest, "malformed JSON body: \(error.message)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw OllamaError(.badRequest, "the body must be a JSON object")
        }
        return object
    }

    /// `model` (or the older `name`).
    static func modelName(_ body: [String: Any]) throws -> OllamaName {
        guard let text = [body["model"], body["name"]].lazy.compactMap({ $0 as? String }).first(where: { !$0.isEmpty }) else {
            throw OllamaError(.badRequest, "model is required")
        }
        return try OllamaName(parsing: text)
    }
}

extension OllamaController {
    // MARK: Chat and generate

    private func chat(_ request: Request, context: Context) async throws -> Response {
        let started = ContinuousClock.now
        return try await turn(try Self.chatTurn(try await Self.body(request)), started: started, request: request, context: context)
    }

    private func generate(
        _ request: Request, context: Context, olderPrompt: (@Sendable (ByteBuffer, Context) async -> Response)?
    ) async throws -> Response {
        let started = ContinuousClock.now
        let buffer = try await Self.buffer(request)
        let body = try Self.object(buffer)
        // Ollama's body names its model; the earlier RAG service's never does (docs/older-api.md).
        if let olderPrompt, body["model"] == nil, body["name"] == nil { return await olderPrompt(buffer, context) }
        return try await turn(try Self.generateTurn(body), started: started, request: request, context: context)
    }

    /// Answers a chat or generate: an exchange with the run's engine, or a load or unload.
    private func turn(_ turn: OllamaTurn, started: ContinuousClock.Instant, request: Request, context: Context) async throws -> Response {
        try Authorizer.check(model: turn.modelText, for: context.apiKey)
        guard turn.openAI != nil else {
            return try await loadOrUnload(
                turn.name, as: turn.modelText, keepAlive: turn.keepAlive, chat: turn.kind == .chat, logger: context.logger)
        }
        return try await exchange(turn, started: started, request: request, context: context)
    }

    /// An `/api/chat` body read as a ``OllamaTurn``.
    /// - Throws: ``OllamaError`` (400) for a malformed field.
    static func chatTurn(_ body: [String: Any]) throws -> OllamaTurn {
        let name = try modelName(body)
        let modelText = body["model"] as? String ?? name.description
        let keepAlive = try OllamaConversion.keepAlive(body["keep_alive"])
        let messages = try OllamaConversion.messages(body["messages"])
        let stream = body["stream"] as? Bool ?? true
        if messages.isEmpty { return OllamaTurn(name: name, modelText: modelText, keepAlive: keepAlive, kind: .chat, stream: stream) }
        var openAI = try OllamaConversion.samplingFields(body["options"])
        openAI["messages"] = messages
        if let tools = body["tools"] as? [Any], !tools.isEmpty { openAI["tools"] = tools }
        if let think = body["think"] as? Bool { openAI["chat_template_kwargs"] = ["enable_thinking": think] }
        return OllamaTurn(
            name: name, modelText: modelText, keepAlive: keepAlive, openAI: openAI,
            responseFormat: try OllamaConversion.responseFormat(body["format"]),
            images: OllamaConversion.hasImages(body["messages"]), kind: .chat, stream: stream)
    }

    /// An `/api/generate` body read as a ``OllamaTurn``.
    /// - Throws: ``OllamaError`` (400) for a malformed field.
    static func generateTurn(_ body: [String: Any]) throws -> OllamaTurn {
        let name = try modelName(body)
        let modelText = body["model"] as? String ?? name.description
        let keepAlive = try OllamaConversion.keepAlive(body["keep_alive"])
        guard body["prompt"] == nil || body["prompt"] is NSNull || body["prompt"] is String else {
            throw OllamaError(.badRequest, "prompt must be a string")
        }
        let prompt = body["prompt"] as? String ?? ""
        let stream = body["stream"] as? Bool ?? true
        if prompt.isEmpty { return OllamaTurn(name: name, modelText: modelText, keepAlive: keepAlive, kind: .generate, stream: stream) }
        var openAI = try OllamaConversion.samplingFields(body["options"])
        let raw = body["raw"] as? Bool ?? false
        let images = (body["images"] as? [Any]).map { !$0.isEmpty } ?? false
        if raw {
            // A templated prompt goes to the engine as it is.
            openAI["prompt"] = prompt
        } else {
            var user: [String: Any] = ["role": "user", "content": prompt]
            if let list = body["images"] { user["images"] = list }
            var messages: [Any] = [user]
            if let system = body["system"] as? String, !system.isEmpty { messages.insert(["role": "system", "content": system], at: 0) }
            openAI["messages"] = try OllamaConversion.messages(messages)
            if let think = body["think"] as? Bool { openAI["chat_template_kwargs"] = ["enable_thinking": think] }
        }
        return OllamaTurn(
            name: name, modelText: modelText, keepAlive: keepAlive, openAI: openAI,
            responseFormat: try OllamaConversion.responseFormat(body["format"]),
            images: images, kind: raw ? .completion : .generate, stream: stream)
    }

    /// The routes whose requests the gateway's fast path may answer (``GatewayFastPath``).
    static let fastPathRoutes: Set<String> = ["/api/chat", "/api/generate"]

    /// A chat or generate the gateway's fast path may answer without the router: a JSON object this API reads
    /// without error, with messages or a prompt, and neither `format` nor images (their checks need the run's
    /// engine and the model's facts). Nil when the router's handler must answer it.
    static func fastPathTurn(path: String, body: ByteBuffer) -> OllamaTurn? {
        guard let object = try? object(body),
            let turn = try? (path == "/api/chat" ? chatTurn(object) : generateTurn(object)),
            turn.openAI != nil, turn.responseFormat == nil, !turn.images
        else { return nil }
        return turn
    }

    /// Which reply a request gets.
    enum ReplyKind {
        /// `/api/chat`: `message`.
        case chat
        /// `/api/generate` through the chat template: `response`.
        case generate
        /// `/api/generate` with `raw`: `response`, from `/v1/completions`.
        case completion

        var path: String { self == .completion ? "/v1/completions" : "/v1/chat/completions" }
        var reader: OpenAIStreamReader.Kind { self == .completion ? .completion : .chat }
    }

    /// An empty conversation or prompt: loads the model, or unloads it with `keep_alive` 0.
    private func loadOrUnload(_ name: OllamaName, as modelText: String, keepAlive: KeepAlive?, chat: Bool, logger: Logger) async throws -> Response {
        let target = try resolvedAlias(name)
        var reply: [String: Any] = ["model": modelText, "created_at": OllamaJSON.time(Date()), "done": true]
        if chat {
            reply["message"] = ["role": "assistant", "content": ""]
        } else {
            reply["response"] = ""
        }
        if keepAlive == .seconds(0) {
            let known = try await library().find(target) != nil || backend.loadedRuns.contains { RunScheduler.matches($0, target.routeModel) }
            guard known else { throw OllamaError.modelNotFound(name.given) }
            try await backend.unload(target.routeModel)
            reply["done_reason"] = "unload"
            return OllamaJSON.response(reply)
        }
        let lease = try await acquire(name, target: target, keepAlive: keepAlive)
        lease.release()
        reply["done_reason"] = "load"
        return OllamaJSON.response(reply)
    }

    func acquire(_ name: OllamaName, target: OllamaName, keepAlive: KeepAlive?) async throws -> OllamaLease {
        do {
            return try await backend.acquire(target.routeModel, keepAlive: keepAlive)
        } catch SchedulerError.notFound {
            throw OllamaError.modelNotFound(name.given)
        } catch SchedulerError.unavailable(let message) {
            throw OllamaError(.serviceUnavailable, message)
        }
    }

    /// One chat or generate exchange with the run's engine, which always streams: its chunks become NDJSON
    /// lines, or one object when the client asked for `stream: false`.
    private func exchange(_ turn: OllamaTurn, started: ContinuousClock.Instant, request: Request, context: Context) async throws -> Response {
        let name = turn.name
        let beforeLoad = ContinuousClock.now
        let lease = try await acquire(name, target: try resolvedAlias(name), keepAlive: turn.keepAlive)
        let loadDuration = ContinuousClock.now - beforeLoad
        let run = lease.run
        let ticket = UsageTicket(
            ledger: usage, keyID: context.apiKey?.id, model: run.model, backend: UsageTicket.backend(run: run.name), route: request.uri.path,
            started: started)
        RequestTag.mark(model: run.model, streamed: turn.stream)
        do {
            if turn.images, !(run.modelPath.map { facts.facts($0).capabilities.contains("vision") } ?? false) {
                throw OllamaError(.badRequest, "\(name) does not support images")
            }
        } catch {
            lease.release()
            throw error
        }
        let sent = ContinuousClock.now
        let upstream: EngineReply
        do {
            upstream = try await lease.send(path: turn.kind.path, body: turn.engineBody(servedName: run.servedName), accept: "text/event-stream")
        } catch {
            lease.release()
            ticket.record(status: 500, usage: nil)
            throw OllamaError.engineDidNotAnswer(run, error)
        }
        guard (200..<300).contains(upstream.status) else {
            let error = await Self.engineError(upstream)
            lease.release()
            ticket.record(status: Int(error.status.code), usage: nil)
            throw error
        }
        let metrics = self.metrics
        let (model, kind, stream) = (turn.modelText, turn.kind, turn.stream)
        let relay = { @Sendable in
            OllamaRelay(
                model: model, kind: kind, stream: stream, started: started, loadDuration: loadDuration, sent: sent,
                tally: StreamTokenTally(model: run.model, started: started, metrics: metrics, ticket: ticket))
        }
        if !turn.stream {
            defer { lease.release() }
            var relay = relay()
            try await relay.run(upstream) { _ in }
            return OllamaJSON.response(relay.wholeReply())
        }
        return Response(
            status: .ok, headers: [.contentType: OllamaRelay.streamContentType],
            body: ResponseBody { writer in
                var relay = relay()
                defer { lease.release() }
                do {
                    try await relay.run(upstream) { line in try await writer.write(line) }
                    try await writer.write(relay.closingLines())
                } catch let error as OllamaError {
                    // Ollama reports a failure after the first line as one more line.
                    try await writer.write(error.line)
                }
                try await writer.finish(nil)
            })
    }

    /// An engine's refusal as Ollama reports it (``engineError(status:body:)``), read from its reply.
    static func engineError(_ reply: EngineReply) async -> OllamaError {
        var data = Data()
        do {
            for try await chunk in reply.body {
                data.append(contentsOf: chunk.readableBytesView)
                if data.count > maxRefusal { break }
            }
        } catch {}
        reply.cancel()
        return engineError(status: reply.status, body: data)
    }

    /// How much of an engine's refusal is read.
    static let maxRefusal = 1 << 20

    /// An engine's refusal as Ollama reports it: the engine's 4xx kept, anything else a 500; its message quoted.
    static func engineError(status: Int, body data: Data) -> OllamaError {
        let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        let message =
            ((object?["error"] as? [String: Any])?["message"] as? String) ?? (object?["error"] as? String)
            ?? String(decoding: data.prefix(300), as: UTF8.self)
        return OllamaError((400..<500).contains(status) ? HTTPResponse.Status(code: status) : .internalServerError, message)
    }
}

/// A chat or generate request, read from its body and put in OpenAI's terms before a run is chosen: what the
/// router's handler and the gateway's fast path (``GatewayFastPath``) both send.
struct OllamaTurn {
    let name: OllamaName
    /// `model` as the client wrote it, which the reply repeats.
    let modelText: String
    let keepAlive: KeepAlive?
    /// The OpenAI request but for `model` and streaming; nil for an empty conversation or prompt (a load or unload).
    var openAI: [String: Any]?
    /// `format` as OpenAI's `response_format`.
    var responseFormat: [String: Any]?
    var images = false
    let kind: OllamaController.ReplyKind
    /// Whether the client asked for lines (`stream`, true unless false).
    let stream: Bool

    /// The body sent to the run's engine: always streamed, with the token counts at the end.
    func engineBody(servedName: String) -> ByteBuffer {
        var body = openAI ?? [:]
        if let responseFormat { body["response_format"] = responseFormat }
        body["model"] = servedName
        body["stream"] = true
        body["stream_options"] = ["include_usage": true]
        return OllamaJSON.encode(body)
    }
}

/// One chat or generate reply on its way from the engine's SSE stream to Ollama's lines, with its timings:
/// load (waiting for a ready run), prompt evaluation (from sending the request to the first token) and
/// evaluation (from the first token to the end), all measured here. The router's handler reads the stream with
/// ``run(_:deliver:)``; the gateway's fast path (``GatewayFastPath``) hands it each piece as it comes (``feed(_:)``).
struct OllamaRelay {
    /// The `Content-Type` of a streamed reply.
    static let streamContentType = "application/x-ndjson"

    let model: String
    let kind: OllamaController.ReplyKind
    /// Whether the client asked for lines; else the text is gathered for one whole reply.
    let stream: Bool
    var reader: OpenAIStreamReader
    let started: ContinuousClock.Instant
    let loadDuration: Duration
    let sent: ContinuousClock.Instant
    var tally: StreamTokenTally
    private var events = ServerSentEvents()
    /// The text and thinking of a whole reply, gathered as they come.
    private var gathered = OpenAIStreamReader.Delta()
    private(set) var firstToken: ContinuousClock.Instant?
    private(set) var ended: ContinuousClock.Instant?
    /// The engine's `[DONE]` came: the reply is complete.
    private(set) var done = false
    private var recorded = false

    /// - Parameters:
    ///   - model: `model` as the client wrote it (``OllamaTurn/modelText``).
    init(
        model: String, kind: OllamaController.ReplyKind, stream: Bool, started: ContinuousClock.Instant, loadDuration: Duration,
        sent: ContinuousClock.Instant, tally: StreamTokenTally
    ) {
        self.model = model
        self.kind = kind
        self.stream = stream
        reader = OpenAIStreamReader(kind: kind.reader)
        self.started = started
        self.loadDuration = loadDuration
        self.sent = sent
        self.tally = tally
    }

    /// What one piece of the engine's stream brought.
    struct Piece {
        /// The chunks with text, in order.
        var deltas: [OpenAIStreamReader.Delta] = []
        /// The engine sent an error or something unreadable, after `deltas`: the reply ends with it.
        var failure: OllamaError?
    }

    /// Reads one piece of the engine's stream; nothing more once ``done``.
    mutating func feed(_ chunk: ByteBuffer) -> Piece {
        var piece = Piece()
        guard !done else { return piece }
        for payload in events.feed(chunk) {
            if payload == "[DONE]" {
                ended = .now
                done = true
                return piece
            }
            let delta: OpenAIStreamReader.Delta
            do {
                delta = try reader.read(payload)
            } catch {
                piece.failure = error
                return piece
            }
            // The first token: the first text, or the end when the reply has none.
            if firstToken == nil, !delta.content.isEmpty || !delta.thinking.isEmpty || reader.finishReason != nil { firstToken = .now }
            guard !delta.content.isEmpty || !delta.thinking.isEmpty else { continue }
            tally.content()
            if !stream {
                gathered.content += delta.content
                gathered.thinking += delta.thinking
            }
            piece.deltas.append(delta)
        }
        if events.buffered > ServerSentEvents.maxLineBytes {
            piece.failure = OllamaError(.internalServerError, "the engine sent a line longer than \(ServerSentEvents.maxLineBytes >> 20) MiB")
        }
        return piece
    }

    /// Records the reply's tokens; the first call counts (the reply ended, broke off, or its client went away).
    /// - Parameter status: the request's status in its usage row (499 when the client went away).
    mutating func finish(status: Int = 200) {
        guard !recorded else { return }
        recorded = true
        ended = ended ?? .now
        if let prompt = reader.promptTokens, let completion = reader.completionTokens {
            tally.usage = ReplyMeter.Usage(promptTokens: prompt, completionTokens: completion)
        }
        tally.record(status: status)
    }

    /// The engine's stream broke off.
    static func brokeOff(_ error: any Error) -> OllamaError {
        OllamaError(.internalServerError, "the engine broke off its reply: \(error)")
    }

    /// The engine's stream ended before `[DONE]`.
    static let endedEarly = OllamaError(.internalServerError, "the engine ended its reply without [DONE]")

    /// Reads the engine's stream to its end, handing the line of each chunk with text to `deliver` when the client
    /// asked for lines; a client that goes away (`deliver` throws) stops the engine's request.
    /// - Throws: ``OllamaError`` when the engine broke off or sent an error; `deliver`'s error.
    mutating func run(_ upstream: EngineReply, deliver: (ByteBuffer) async throws -> Void) async throws {
        defer {
            upstream.cancel()
            finish()
        }
        do {
            for try await chunk in upstream.body {
                let piece = feed(chunk)
                if stream {
                    for delta in piece.deltas { try await deliver(line(delta)) }
                }
                if let failure = piece.failure { throw failure }
                if done { return }
            }
        } catch let error as OllamaError {
            throw error
        } catch let error as EngineClientError {
            throw Self.brokeOff(error)
        }
        throw Self.endedEarly
    }

    /// One chunk's line (``chunk(_:)``).
    func line(_ delta: OpenAIStreamReader.Delta) -> ByteBuffer {
        OllamaJSON.line(chunk(delta))
    }

    /// The lines that end a streamed reply: its tool calls, when it has any, and the last line.
    func closingLines() -> ByteBuffer {
        var lines = reader.toolCalls.isEmpty ? ByteBuffer() : OllamaJSON.line(toolCallChunk())
        var last = OllamaJSON.line(final(content: "", thinking: "", toolCalls: false))
        lines.writeBuffer(&last)
        return lines
    }

    /// A whole reply (`stream: false`): the gathered text and thinking, the tool calls, and the last line's fields.
    func wholeReply() -> [String: Any] {
        final(content: gathered.content, thinking: gathered.thinking, toolCalls: true)
    }

    /// A line with one chunk's text.
    func chunk(_ delta: OpenAIStreamReader.Delta) -> [String: Any] {
        var line: [String: Any] = ["model": model, "created_at": OllamaJSON.time(Date()), "done": false]
        if kind == .chat {
            var message: [String: Any] = ["role": "assistant", "content": delta.content]
            if !delta.thinking.isEmpty { message["thinking"] = delta.thinking }
            line["message"] = message
        } else {
            line["response"] = delta.content
            if !delta.thinking.isEmpty { line["thinking"] = delta.thinking }
        }
        return line
    }

    /// The line with the tool calls, sent whole once the stream has assembled them.
    func toolCallChunk() -> [String: Any] {
        var line = chunk(.init())
        if kind == .chat {
            line["message"] = ["role": "assistant", "content": "", "tool_calls": reader.toolCalls]
        } else {
            line["tool_calls"] = reader.toolCalls
        }
        return line
    }

    /// The last line (or the whole reply): `done`, `done_reason` and the counts and durations, in nanoseconds.
    /// - Parameter toolCalls: whether the tool calls go in it (a whole reply), rather than in a line of their own.
    func final(content: String, thinking: String, toolCalls: Bool) -> [String: Any] {
        var reply = chunk(.init(content: content, thinking: thinking))
        if toolCalls, !reader.toolCalls.isEmpty {
            if kind == .chat {
                var message = reply["message"] as? [String: Any] ?? [:]
                message["tool_calls"] = reader.toolCalls
                reply["message"] = message
            } else {
                reply["tool_calls"] = reader.toolCalls
            }
        }
        let end = ended ?? .now
        let first = firstToken ?? end
        reply["done"] = true
        reply["done_reason"] = OllamaConversion.doneReason(reader.finishReason)
        reply["total_duration"] = OllamaJSON.nanoseconds(end - started)
        reply["load_duration"] = OllamaJSON.nanoseconds(loadDuration)
        reply["prompt_eval_count"] = reader.promptTokens ?? 0
        reply["prompt_eval_duration"] = OllamaJSON.nanoseconds(first - sent)
        reply["eval_count"] = reader.completionTokens ?? 0
        reply["eval_duration"] = OllamaJSON.nanoseconds(end - first)
        return reply
    }
}
