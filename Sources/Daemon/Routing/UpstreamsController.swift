import Foundation
import Hummingbird
import Logging
import ModelStore
import ModeldAPI
import NIOCore
import Transfer

/// `/api/v1/upstreams` and `/api/v1/model-groups` (admin scope): the servers the gateway forwards to besides
/// local runs, and the model groups that choose among backends (docs/gateway.md). Every change reloads
/// ``BackendRouter``. Replies name where a key comes from (a variable or a file) and whether it is there; never
/// the key.
struct UpstreamsController {
    let router: BackendRouter

    func addRoutes(upstreams: RouterGroup<DaemonRequestContext>, groups: RouterGroup<DaemonRequestContext>) {
        upstreams.get(use: list)
        upstreams.post(use: save)
        upstreams.get(":name", use: show)
        upstreams.post(":name/remove", use: remove)
        upstreams.post(":name/disable") { request, context in try await setEnabled(false, context: context) }
        upstreams.post(":name/enable") { request, context in try await setEnabled(true, context: context) }
        upstreams.post(":name/test", use: test)
        groups.get(use: listGroups)
        groups.post(use: saveGroup)
        groups.post(":name/remove", use: removeGroup)
    }

    @Sendable func list(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<[UpstreamInfo]> {
        Envelope(requestID: context.id, data: router.upstreams.map { $0.info(health: router.health($0.backend)) })
    }

    @Sendable func show(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<UpstreamInfo> {
        let upstream = try named(context)
        return Envelope(requestID: context.id, data: upstream.info(health: router.health(upstream.backend)))
    }

    /// Adds an upstream or replaces its settings; with `discover`, lists its models at once.
    @Sendable func save(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<UpstreamInfo> {
        let body = try await request.decodeJSON(as: UpstreamRequest.self, context: context)
        let record = try Self.record(body)
        _ = try await router.store.saveUpstream(record)
        try await router.reload()
        context.logger.info(
            "upstream saved",
            metadata: ["name": "\(record.name)", "kind": "\(record.kind)", "url": "\(record.url)", "key_from": "\(Self.keySource(record))"])
        if record.discover { await router.discover() }
        let upstream = try named(record.name)
        return Envelope(requestID: context.id, data: upstream.info(health: router.health(upstream.backend)))
    }

    @Sendable func remove(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<UpstreamInfo> {
        let upstream = try named(context)
        try await router.store.removeUpstream(upstream.name)
        try await router.reload()
        context.logger.info("upstream removed", metadata: ["name": "\(upstream.name)"])
        return Envelope(requestID: context.id, data: upstream.info(health: .init(state: "removed", inFlight: 0)))
    }

    private func setEnabled(_ enabled: Bool, context: DaemonRequestContext) async throws -> Envelope<UpstreamInfo> {
        let name = try named(context).name
        _ = try await router.store.setUpstream(name, enabled: enabled)
        try await router.reload()
        let upstream = try named(name)
        return Envelope(requestID: context.id, data: upstream.info(health: router.health(upstream.backend)))
    }

    /// Lists the upstream's models with its key: whether it is reachable and the key accepted.
    @Sendable func test(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<UpstreamTestResult> {
        Envelope(requestID: context.id, data: await router.lister(try named(context)))
    }

    @Sendable func listGroups(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<[ModelGroupInfo]> {
        let groups = try await router.store.modelGroups()
        return Envelope(
            requestID: context.id,
            data: groups.map { ModelGroupInfo(name: $0.name, targets: $0.targets, strategy: $0.strategy.flatMap(RoutingStrategy.init(rawValue:))) })
    }

    @Sendable func saveGroup(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<ModelGroupInfo> {
        let body = try await request.decodeJSON(as: ModelGroupInfo.self, context: context)
        try Self.checkName(body.name, what: "a model group's name")
        let targets = body.targets.map { $0.trimmingCharacters(in: .whitespaces) }
        guard targets.allSatisfy({ !$0.isEmpty && !$0.unicodeScalars.contains { $0.properties.generalCategory == .control } }) else {
            throw APIError.badRequest("targets must be model names, without control characters", field: "targets")
        }
        try await router.store.saveModelGroup(ModelGroupRecord(name: body.name, targets: targets, strategy: body.strategy?.rawValue))
        try await router.reload()
        return Envelope(requestID: context.id, data: ModelGroupInfo(name: body.name, targets: targets, strategy: body.strategy))
    }

    @Sendable func removeGroup(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<EmptyPayload> {
        try await router.store.removeModelGroup(try context.parameters.require("name"))
        try await router.reload()
        return Envelope(requestID: context.id, data: EmptyPayload())
    }

    private func named(_ context: DaemonRequestContext) throws -> Upstream {
        try named(try context.parameters.require("name"))
    }

    private func named(_ name: String) throws -> Upstream {
        guard let upstream = router.upstream(name) else {
            throw APIError.notFound("no upstream \(name): `modelctl upstream list` lists them")
        }
        return upstream
    }

    // MARK: Checking

    /// The record for a request, checked: a clear error for each field at fault.
    static func record(_ body: UpstreamRequest) throws -> UpstreamRecord {
        try checkName(body.name, what: "an upstream's name")
        let kind = body.kind ?? .openai
        guard let url = URLComponents(string: body.url), url.scheme == "http" || url.scheme == "https", let host = url.host, !host.isEmpty else {
            throw APIError.badRequest("url must be an http:// or https:// URL, such as https://api.openai.com/v1", field: "url")
        }
        // A key in the URL would be stored and shown in clear.
        guard url.user == nil, url.password == nil, url.query == nil, url.fragment == nil else {
            throw APIError.badRequest(
                "url must not hold a user, password, query or fragment: give the key with api_key_env or api_key_file", field: "url")
        }
        if body.apiKeyEnv != nil && body.apiKeyFile != nil {
            throw APIError.badRequest("give the key either by api_key_env or by api_key_file, not both", field: "api_key_env")
        }
        if let variable = body.apiKeyEnv, variable.wholeMatch(of: /[A-Za-z_][A-Za-z0-9_]{0,127}/) == nil {
            throw APIError.badRequest(
                "api_key_env must name an environment variable (such as OPENAI_API_KEY), not hold the key", field: "api_key_env")
        }
        if let file = body.apiKeyFile, !file.hasPrefix("/") || file.contains("\0") {
            throw APIError.badRequest("api_key_file must be an absolute path", field: "api_key_file")
        }
        let models = (body.models ?? []).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let discover = body.discover ?? false
        guard !models.isEmpty || discover else {
            throw APIError.badRequest("name the models it serves (models), or let modeld list them (discover)", field: "models")
        }
        if kind == .azure && discover {
            throw APIError.badRequest("an Azure OpenAI upstream's models are its deployments: give them with models", field: "discover")
        }
        if let weight = body.weight, weight < 0 { throw APIError.badRequest("weight must be 0 or more", field: "weight") }
        if (body.costIn ?? 0) < 0 || (body.costOut ?? 0) < 0 { throw APIError.badRequest("costs must be 0 or more", field: "cost_in") }
        if let limit = body.maxConcurrency, limit < 1 { throw APIError.badRequest("max_concurrency must be at least 1", field: "max_concurrency") }
        if let timeout = body.timeout, !(timeout > 0 && timeout <= 3600) {
            throw APIError.badRequest("timeout must be between 0 and 3600 seconds", field: "timeout")
        }
        let base = body.url.hasSuffix("/") ? String(body.url.dropLast()) : body.url
        return UpstreamRecord(
            name: body.name, kind: kind.rawValue, url: base, apiKeyEnv: body.apiKeyEnv, apiKeyFile: body.apiKeyFile, apiVersion: body.apiVersion,
            models: models, discover: discover, priority: body.priority ?? 0, weight: body.weight ?? 1, costIn: body.costIn ?? 0,
            costOut: body.costOut ?? 0, maxConcurrency: body.maxConcurrency, timeout: body.timeout ?? 30)
    }

    static func checkName(_ name: String, what: String) throws {
        guard name.wholeMatch(of: /[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}/) != nil else {
            throw APIError.badRequest("\(what) must be 1 to 64 letters, digits, '.', '_', ':' or '-'", field: "name")
        }
    }

    /// Where the key comes from, for the log: the variable's name or the file's path.
    private static func keySource(_ record: UpstreamRecord) -> String {
        record.apiKeyEnv.map { "env \($0)" } ?? record.apiKeyFile.map { "file \($0)" } ?? "none"
    }

    /// Lists an upstream's models with its key (``Upstream/listRequest()``): `test`, discovery and probes.
    static func list(_ upstream: Upstream, client: EngineClient = .shared) async -> UpstreamTestResult {
        let started = ContinuousClock.now
        func result(ok: Bool, status: Int? = nil, models: [String] = [], error: String? = nil) -> UpstreamTestResult {
            UpstreamTestResult(
                name: upstream.name, ok: ok, status: status, latencyMs: RequestLogMiddleware<DaemonRequestContext>.milliseconds(.now - started),
                models: models, error: error)
        }
        if let problem = upstream.keyProblem { return result(ok: false, error: problem) }
        do {
            let reply = try await client.fetch(try upstream.listRequest(), limit: 16 << 20)
            guard (200..<300).contains(reply.head.status) else {
                return result(ok: false, status: reply.head.status, error: "the upstream answered \(reply.head.status)")
            }
            return result(ok: true, status: reply.head.status, models: upstream.models(inListing: reply.body))
        } catch {
            return result(ok: false, error: "\(error)")
        }
    }
}
