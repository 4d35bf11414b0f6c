import Foundation
import Hummingbird
import Logging
import ModelStore
import ModeldAPI
import Synchronization

/// `/api/v1/keys`: API keys for TCP clients (the control socket needs none).
struct KeysController {
    let store: Store
    let events: EventBus

    func addRoutes(to group: RouterGroup<DaemonRequestContext>) {
        group.get(use: list)
        group.post(use: create)
        group.post(":id/revoke", use: revoke)
        group.patch(":id", use: update)
    }

    @Sendable func list(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<[KeyInfo]> {
        Envelope(requestID: context.id, data: try await store.apiKeys().map { KeyInfo($0, key: nil) })
    }

    @Sendable func create(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<KeyInfo> {
        let body = try await request.decodeJSON(as: KeyCreateRequest.self, context: context)
        let scope = body.scope ?? "inference"
        guard ["inference", "admin"].contains(scope) else { throw APIError.badRequest("scope must be inference or admin") }
        guard !body.name.trimmingCharacters(in: .whitespaces).isEmpty else { throw APIError.badRequest("name must not be empty") }
        // Names are printed by `modelctl keys list` and logged: no NUL, escape or other control character.
        guard !body.name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw APIError.badRequest("name must not contain control characters")
        }
        let limits = try Self.limits(body.limits, creating: true)
        let (record, key) = try await store.createAPIKey(name: body.name, scope: scope, limits: limits)
        context.logger.info("API key created", metadata: ["name": "\(record.name)", "scope": "\(scope)", "prefix": "\(record.prefix)"])
        events.publish(.keyCreated, KeyInfo(record, key: nil))
        return Envelope(requestID: context.id, data: KeyInfo(record, key: key))
    }

    /// `PATCH /api/v1/keys/{id}`: changes a key's limits; the fields left out keep their values.
    @Sendable func update(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<KeyInfo> {
        let body = try await request.decodeJSON(as: KeyLimitsRequest.self, context: context)
        let record = try await store.updateAPIKey(try context.parameters.require("id"), limits: try Self.limits(body, creating: false))
        context.logger.info("API key limits changed", metadata: ["name": "\(record.name)"])
        return Envelope(requestID: context.id, data: KeyInfo(record, key: nil))
    }

    /// The limits a request gives, checked: positive numbers, or 0 to remove a limit when changing one.
    static func limits(_ body: KeyLimitsRequest, creating: Bool) throws -> APIKeyLimits {
        let least = creating ? 1 : 0
        let removal = creating ? "" : " (0 removes the limit)"
        let counts = [("rate_per_minute", body.ratePerMinute), ("tokens_per_day", body.tokensPerDay), ("tokens_per_month", body.tokensPerMonth)]
        for (name, value) in counts {
            if let value, value < least { throw APIError.badRequest("\(name) must be at least \(least)\(removal)") }
        }
        if let cap = body.spendCap, !(cap.isFinite && (cap > 0 || !creating && cap == 0)) {
            throw APIError.badRequest("spend_cap must be a positive number\(removal)")
        }
        var models = body.allowedModels?.map { $0.trimmingCharacters(in: .whitespaces) }
        if let list = models {
            guard !list.contains(where: \.isEmpty) else { throw APIError.badRequest("allowed_models must not hold an empty name") }
            guard !list.contains(where: { $0.unicodeScalars.contains { $0.properties.generalCategory == .control } }) else {
                throw APIError.badRequest("allowed_models must not hold control characters")
            }
            if creating, list.isEmpty { models = nil }
        }
        return APIKeyLimits(
            ratePerMinute: body.ratePerMinute, tokensPerDay: body.tokensPerDay, tokensPerMonth: body.tokensPerMonth, spendCap: body.spendCap,
            allowedModels: models)
    }

    @Sendable func revoke(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<KeyInfo> {
        let revoked = KeyInfo(try await store.revokeAPIKey(try context.parameters.require("id")), key: nil)
        events.publish(.keyRevoked, revoked)
        return Envelope(requestID: context.id, data: revoked)
    }
}

extension KeyInfo {
    init(_ record: APIKeyRecord, key: String?) {
        self.init(
            id: record.id, name: record.name, prefix: record.prefix, scope: record.scope,
            limits: KeyLimitsRequest(
                ratePerMinute: record.ratePerMinute, tokensPerDay: record.tokensPerDay, tokensPerMonth: record.tokensPerMonth,
                spendCap: record.spendCap, allowedModels: record.allowedModels),
            createdAt: record.createdAt, lastUsedAt: record.lastUsedAt, revoked: record.revokedAt != nil, key: key)
    }
}

/// Once any API key exists, every TCP request but `/health` and `/readiness` needs `Authorization: Bearer <key>`; the
/// management API (`/api/v1/*`) needs the admin scope, except the LLM API (`/api/v1/llm/*`), sessions and the
/// WebSocket chat, which are inference like `/v1/*` and Ollama's read and inference routes (``OllamaController/inferencePaths``); `/metrics` takes a key of either scope (a Prometheus scraper needs no admin
/// rights). The control socket is trusted: its 0660 mode is the access control. The key a request was allowed
/// with goes on in its context (``DaemonRequestContext/apiKey``), for its usage and its allowed models.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = DaemonRequestContext
    let authorizer: Authorizer

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        switch try await authorizer.decide(path: path, authorization: request.headers[.authorization], isControlSocket: context.isControlSocket) {
        case .allow(let key):
            var context = context
            context.apiKey = key
            return try await next(request, context)
        case .deny(let status, let message, let retryAfter):
            var response = ErrorShape.of(path: path).response(APIError(status, message), requestID: context.id)
            if let retryAfter { response.headers[.retryAfter] = String(retryAfter) }
            return response
        }
    }
}

/// Who may make a request over TCP: once any API key exists, every request except `/health`, `/readiness` and the web console's
/// files (``ConsoleController/isPublic(path:)``: the page asks for a key itself) needs
/// `Authorization: Bearer <key>`; routes other than the OpenAI API, the LLM API, sessions, the WebSocket chat and
/// `/metrics` need an admin key; each key's rate limit applies, and on the routes that reach a backend
/// (``UsageLedger/meteredPaths``) its token and spending quotas. The control socket is trusted. Shared by
/// ``AuthMiddleware`` and the gateway's fast path (``GatewayFastPath``), so both take from the same rate buckets and
/// count against the same quotas.
struct Authorizer: Sendable {
    let store: Store
    let usage: UsageLedger
    let limiter = RateLimiter()

    enum Decision: Equatable {
        /// The key the request was made with; nil when it needs none.
        case allow(APIKeyRecord?)
        /// `retryAfter`: whole seconds, for a rate-limited key or one over its quota.
        case deny(HTTPResponse.Status, String, retryAfter: Int?)

        var allows: Bool {
            if case .allow = self { return true }
            return false
        }
    }

    /// Decides a request; an allowed request with a rate-limited key has taken one of its tokens.
    /// - Parameter authorization: the `Authorization` header.
    func decide(path: String, authorization: String?, isControlSocket: Bool) async throws -> Decision {
        if isControlSocket || path == "/health" || path == "/readiness" || ConsoleController.isPublic(path: path) { return .allow(nil) }
        return decide(path: path, authorization: authorization, activeKeys: try await store.activeAPIKeys(), model: nil)
    }

    /// ``decide(path:authorization:isControlSocket:)`` without waiting, for code on an event loop: nil when the
    /// active keys are not in memory yet (the router's path, which reads them, decides then).
    /// - Parameter model: the model the request names; a key that may not use it is refused before its rate bucket
    ///   is touched (the router then answers the refusal).
    func decideNow(path: String, authorization: String?, isControlSocket: Bool, model: String) -> Decision? {
        if isControlSocket || path == "/health" || path == "/readiness" || ConsoleController.isPublic(path: path) { return .allow(nil) }
        return store.cachedActiveAPIKeys().map { decide(path: path, authorization: authorization, activeKeys: $0, model: model) }
    }

    /// Sessions and the WebSocket chat, which any key may use (each key sees only its own sessions).
    static func isConversation(_ path: String) -> Bool {
        path == "/api/v1/sessions" || path.hasPrefix("/api/v1/sessions/") || path == ChatSocket.path
    }

    /// The active key an `Authorization` header carries; nil without one, or when it names no active key.
    func caller(authorization: String?) async throws -> APIKeyRecord? {
        guard let authorization, authorization.hasPrefix("Bearer ") else { return nil }
        return try await store.authenticate(key: String(authorization.dropFirst(7)).trimmingCharacters(in: .whitespaces))
    }

    private func decide(path: String, authorization: String?, activeKeys: [String: APIKeyRecord], model: String?) -> Decision {
        guard !activeKeys.isEmpty else { return .allow(nil) }
        guard let authorization, authorization.hasPrefix("Bearer ") else {
            return .deny(
                .unauthorized, "an API key is required: send Authorization: Bearer <key> (create one with `modelctl keys create`)", retryAfter: nil)
        }
        guard let key = store.authenticate(key: String(authorization.dropFirst(7)).trimmingCharacters(in: .whitespaces), among: activeKeys) else {
            return .deny(.unauthorized, "invalid or revoked API key", retryAfter: nil)
        }
        if !path.hasPrefix("/v1/") && path != "/metrics" && !path.hasPrefix("/api/v1/llm/") && !OllamaController.inferencePaths.contains(path)
            && !LLMController.olderInferencePaths.contains(path) && !Self.isConversation(path) && key.scope != "admin"
        {
            return .deny(.forbidden, "API key \(key.name) has scope \(key.scope); \(path) needs an admin key", retryAfter: nil)
        }
        if let model, !key.allows(model: model) { return .deny(.forbidden, Self.modelRefusal(key: key, model: model), retryAfter: nil) }
        if UsageLedger.meteredPaths.contains(path), let denial = usage.denial(for: key) {
            return .deny(.tooManyRequests, denial.message, retryAfter: denial.retryAfter)
        }
        if let rate = key.ratePerMinute, let wait = limiter.take(key: key.id, perMinute: rate) {
            return .deny(.tooManyRequests, "API key \(key.name) is limited to \(rate) requests per minute; retry in \(wait) s", retryAfter: wait)
        }
        return .allow(key)
    }

    /// Refuses a model that a key's allowed-models list does not name.
    /// - Throws: a 403 ``APIError`` that names the models the key may use.
    static func check(model: String, for key: APIKeyRecord?) throws {
        guard let key, !key.allows(model: model) else { return }
        throw APIError(.forbidden, modelRefusal(key: key, model: model))
    }

    private static func modelRefusal(key: APIKeyRecord, model: String) -> String {
        "API key \(key.name) may not use model \(model); it may use \((key.allowedModels ?? []).joined(separator: ", "))"
    }
}

/// A token bucket per key: `perMinute` requests a minute, with bursts up to that many.
final class RateLimiter: Sendable {
    private let buckets = Mutex<[String: (tokens: Double, updated: ContinuousClock.Instant)]>([:])

    /// Takes one token. - Returns: nil when allowed, else the whole seconds to wait for the next token.
    func take(key: String, perMinute: Int) -> Int? {
        let now = ContinuousClock.now
        let capacity = Double(perMinute)
        let perSecond = capacity / 60
        return buckets.withLock { buckets in
            var bucket = buckets[key] ?? (capacity, now)
            let elapsed = now - bucket.updated
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            bucket.tokens = min(capacity, bucket.tokens + seconds * perSecond)
            bucket.updated = now
            defer { buckets[key] = bucket }
            guard bucket.tokens >= 1 else { return max(1, Int(((1 - bucket.tokens) / perSecond).rounded(.up))) }
            bucket.tokens -= 1
            return nil
        }
    }
}
