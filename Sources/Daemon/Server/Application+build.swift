import Archives
import Catalog
import Downloads
import Foundation
import HTTPTypes
import Hummingbird
import Launchers
import Logging
import ModelStore
import ModeldAPI
import NIOCore
import ServiceLifecycle
import Tracing

/// Everything the HTTP layer needs, built once at start-up.
struct DaemonContext: Sendable {
    var configuration: DaemonConfiguration
    var catalog: ModelCatalog
    var store: Store
    var pulls: PullService
    var supervisor: Supervisor
    /// The Prometheus registry behind `/metrics`, shared with the pull service and the supervisor.
    var metrics: DaemonMetrics
    var logger: Logger
    /// API keys and their rate limits, shared by the router and the gateway's fast path.
    var authorizer: Authorizer
    /// Which run answers a request for a model, which runs stay loaded, and their use: every route that sends
    /// requests to engines goes through it.
    var scheduler: RunScheduler
    /// Which backends (local runs, upstreams) answer a model, in which order: the routing layer above the scheduler.
    var router: BackendRouter
    /// What changed, for `GET /api/v1/events` (``DaemonStartup/prepare`` connects the supervisor to it).
    var events: EventBus
    /// Publishes the pulls the API starts.
    var pullEvents: PullEventSource
    /// Usage accounting and the keys' quota counters, shared by every route that reaches a backend.
    var usage: UsageLedger
    /// When the daemon started, for the uptime in `GET /api/v1/status`.
    var startedAt = ContinuousClock.now
    /// The certificate the TCP listeners serve HTTPS with; nil for plain HTTP.
    var tls: ServerTLS?
    /// The conversation replies being generated, shared by sessions and the WebSocket chat (one per session).
    let replies = ActiveReplies()
    /// Whether the daemon is ready to serve, for `GET /readiness`.
    let readiness = DaemonReadiness()
    /// Tokenizers and chat templates, for fitting conversations to a model's context.
    let tokenizers = TokenizerCache()

    /// How sessions and the WebSocket chat reach engines.
    var chatTurn: ChatTurn { ChatTurn(scheduler: scheduler, metrics: metrics, tokenizers: tokenizers, usage: usage) }
    /// The span exporter when tracing is on (docs/tracing.md); nil when it is off.
    var tracing: (any Service)?

    /// Which web pages may call the daemon, and under which host names.
    var origins: OriginPolicy { OriginPolicy(configuration: configuration) }

}

extension GatewayController {
    /// The gateway of the daemon's routers.
    init(daemon: DaemonContext) {
        self.init(
            scheduler: daemon.scheduler, router: daemon.router, metrics: daemon.metrics, usage: daemon.usage,
            defaultModel: daemon.configuration.defaultModel)
    }
}

/// A router with the middleware every listener's requests pass: request log, request id, origin checks, errors,
/// API keys.
private func makeRouter(_ daemon: DaemonContext) -> Router<DaemonRequestContext> {
    let router = Router(context: DaemonRequestContext.self)
    // First, so that its span covers everything the request meets and carries the status the client gets.
    if daemon.tracing != nil { router.add(middleware: TracingMiddleware(attributes: ["modeld.relay": "router"])) }
    router.add(middleware: RequestLogMiddleware(metrics: daemon.metrics))
    router.add(middleware: RequestIDHeaderMiddleware())
    // Before the error envelope, so that error replies to allowed origins carry the CORS headers too.
    router.add(middleware: OriginMiddleware(policy: daemon.origins, store: daemon.store))
    router.add(middleware: ErrorReplyMiddleware())
    router.add(middleware: AuthMiddleware(authorizer: daemon.authorizer))
    return router
}

/// The router of the Ollama listener (`ollama_listen`): Ollama's API and the OpenAI gateway, as Ollama serves both.
/// - Parameter ollama: the Ollama API the daemon's router serves too (they share its aliases and caches).
func buildOllamaRouter(_ daemon: DaemonContext, gateway: GatewayController, ollama: OllamaController) -> Router<DaemonRequestContext> {
    let router = makeRouter(daemon)
    gateway.addRoutes(to: router)
    ollama.addListenerRoutes(to: router)
    return router
}

/// Builds the daemon's router: every route of the management API, the OpenAI gateway and Ollama's API.
func buildRouter(_ daemon: DaemonContext, gateway: GatewayController? = nil, ollama: OllamaController? = nil) -> Router<DaemonRequestContext> {
    let router = makeRouter(daemon)

    router.get("/health") { _, _ in
        HealthInfo(status: "ok", version: modeldVersion)
    }
    router.get("/readiness") { _, context in
        try await readiness(daemon, context: context)
    }
    MetricsController(metrics: daemon.metrics, supervisor: daemon.supervisor).addRoutes(to: router)
    let gateway = gateway ?? GatewayController(daemon: daemon)
    let api = router.group("api/v1")
    KeysController(store: daemon.store, events: daemon.events).addRoutes(to: api.group("keys"))
    UpstreamsController(router: daemon.router).addRoutes(upstreams: api.group("upstreams"), groups: api.group("model-groups"))
    UsageController(store: daemon.store, usage: daemon.usage).addRoutes(to: api.group("usage"))
    EventsController(bus: daemon.events).addRoutes(to: api)
    StatusController(daemon: daemon).addRoutes(to: api)
    SystemController(daemon: daemon).addRoutes(to: api)
    let models = api.group("models")
    ModelsController(catalog: daemon.catalog, store: daemon.store).addRoutes(to: models)
    PullController(catalog: daemon.catalog, pulls: daemon.pulls, events: daemon.pullEvents).addRoutes(to: models)
    RunsController(
        catalog: daemon.catalog, store: daemon.store, supervisor: daemon.supervisor, scheduler: daemon.scheduler, pulls: daemon.pulls,
        pullEvents: daemon.pullEvents
    ).addRoutes(to: models)
    ArchiveController(catalog: daemon.catalog, archives: ArchiveService(pulls: daemon.pulls), events: daemon.events).addRoutes(to: models)
    // Last: `{ref}` must not shadow the fixed routes above (the router prefers fixed segments anyway).
    models.get(":ref") { request, context in try await show(daemon, request: request, context: context, ref: try context.parameters.require("ref")) }
    models.get(":ref/:name") { request, context in
        try await show(
            daemon, request: request, context: context, ref: "\(try context.parameters.require("ref"))/\(try context.parameters.require("name"))")
    }
    api.get("chat/ws") { _, _ -> Response in
        throw APIError(
            .upgradeRequired, "\(ChatSocket.path) is a WebSocket: open it with an upgrade request (Upgrade: websocket) as a new connection")
    }
    let llm = LLMController(
        scheduler: daemon.scheduler, metrics: daemon.metrics, usage: daemon.usage, defaultModel: daemon.configuration.defaultModel)
    llm.addRoutes(to: api.group("llm"))
    llm.addOlderRoutes(to: router)
    SessionsController(store: daemon.store, authorizer: daemon.authorizer, turn: daemon.chatTurn, active: daemon.replies)
        .addRoutes(to: api.group("sessions"))
    gateway.addRoutes(to: router)
    (ollama ?? OllamaController(daemon: daemon, gateway: gateway)).addRoutes(
        to: router, olderPrompt: { buffer, context in await llm.olderPrompt(buffer, context: context) })
    router.get("/openapi.json") { _, _ in
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: OpenAPIDocument.json)))
    }
    router.get("/docs") { _, _ in
        Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.html)))
    }
    ConsoleController().addRoutes(to: router)
    return router
}

extension HealthInfo: ResponseEncodable {}

/// `GET /readiness`: 200 once the store answers, every listener accepts and the recorded runs are reconciled;
/// 503 with the reason before then and once shutdown has begun.
func readiness(_ daemon: DaemonContext, context: DaemonRequestContext) async throws -> Envelope<HealthInfo> {
    if let reason = daemon.readiness.notReadyReason { throw APIError(.serviceUnavailable, "not ready: \(reason)") }
    do {
        _ = try await daemon.store.journalMode()
    } catch {
        throw APIError(.serviceUnavailable, "not ready: the store at \(daemon.store.path) does not answer: \(error)")
    }
    return Envelope(requestID: context.id, data: HealthInfo(status: "ready", version: modeldVersion))
}

private let requestIDField = HTTPField.Name("X-Request-Id")!

/// Echoes the request id in `X-Request-Id`, so a client can quote it when reporting a problem.
struct RequestIDHeaderMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[requestIDField] = context.id
        return response
    }
}

/// `GET /api/v1/models/{ref}`: a model's catalog entry, local versions and runs.
func show(_ daemon: DaemonContext, request: Request, context: DaemonRequestContext, ref rawRef: String) async throws -> Envelope<ModelDetail> {
    let ref = rawRef.removingPercentEncoding ?? rawRef
    let source = try ModelsController.source(request.uri.queryParameters["source"].map(String.init))
    let resolved = try ModelsController.resolve(daemon.catalog, model: ref, source: source)
    let local = try await daemon.store.localVersions()
    let catalog = resolved.entry.map { entry in
        ModelsController.catalogWithState(ModelCatalog(entries: [entry]), local: local)[0]
    }
    let versions = local.filter { $0.model.source == resolved.source.rawValue && $0.model.repo.lowercased() == resolved.repo.lowercased() }
    let names = Set(
        [ref.lowercased(), resolved.repo.lowercased()]
            + (resolved.entry.flatMap { entry in resolved.size.map { "\(entry.id):\($0.size)" } }.map { [$0] } ?? []))
    let runs = await daemon.supervisor.list().filter { names.contains($0.model.lowercased()) }.map(RunSummary.init)
    return Envelope(
        requestID: context.id,
        data: ModelDetail(
            ref: ref, source: resolved.source.rawValue, repo: resolved.repo, catalog: catalog,
            versions: versions.map(LocalVersionInfo.init), runs: runs))
}
