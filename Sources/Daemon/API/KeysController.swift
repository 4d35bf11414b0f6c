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
        if let rate = body.ratePerMinute, rate < 1 { throw APIError.badRequest("rate_per_minute must be at least 1") }
        let (record, key) = try await store.createAPIKey(name: body.name, scope: scope, ratePerMinute: body.ratePerMinute)
        context.logger.info("API key created", metadata: ["name": "\(record.name)", "scope": "\(scope)", "prefix": "\(record.prefix)"])
        events.publish(.keyCreated, KeyInfo(record, key: nil))
        return Envelope(requestID: context.id, data: KeyInfo(record, key: key))
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
            id: record.id, name: record.name, prefix: record.prefix, scope: record.scope, ratePerMinute: record.ratePerMinute,
            createdAt: record.createdAt, lastUsedAt: record.lastUsedAt, revoked: record.revokedAt != nil, key: key)
    }
}

/// Once any API key exists, every TCP request but `/health` needs `Authorization: Bearer <key>`; the
/// management API (`/api/v1/*`) needs the admin scope, except the LLM API (`/api/v1/llm/*`), which is
/// inference like `/v1/*` and Ollama's read and inference routes (``OllamaController/inferencePaths``); `/metrics` takes a key of either scope (a Prometheus scraper needs no admin
/// rights). The control socket is trusted: its 0660 mode is the access control.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = DaemonRequestContext
    let authorizer: Authorizer

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        switch try await authorizer.decide(path: path, authorization: request.headers[.authorization], isControlSocket: context.isControlSocket) {
        case .allow:
            return try await next(request, context)
        case .deny(let status, let message, let retryAfter):
            var response = ErrorShape.of(path: path).response(APIError(status, message), requestID: context.id)
            if let retryAfter { response.headers[.retryAfter] = String(retryAfter) }
            return response
        }
    }
}

/// Who may make a request over TCP: once any API key exists, every request except `/health` and the web console's
/// files (``ConsoleController/isPublic(path:)``: the page asks for a key itself) needs
/// `Authorization: Bearer <key>`; routes other than the OpenAI API, the LLM API and `/metrics` need an admin key;
/// each key's rate limit applies. The control socket is trusted. Shared by ``AuthMiddleware`` and the gateway's
/// fast path (``GatewayFastPath``), so both take from the same rate buckets.
struct Authorizer: Sendable {
    let store: Store
    let limiter = RateLimiter()

    enum Decision: Equatable {
        case allow
        /// `retryAfter`: whole seconds, for a rate-limited key.
        case deny(HTTPResponse.Status, String, retryAfter: Int?)
    }

    /// Decides a request; an allowed request with a rate-limited key has taken one of its tokens.
    /// - Parameter authorization: the `Authorization` header.
    func decide(path: String, authorization: String?, isControlSocket: Bool) async throws -> Decision {
        if isControlSocket || path == "/health" || ConsoleController.isPublic(path: path) { return .allow }
        return decide(path: path, authorization: authorization, activeKeys: try await store.activeAPIKeys())
    }

    /// ``decide(path:authorization:isControlSocket:)`` without waiting, for code on an event loop: nil when the
    /// active keys are not in memory yet (the router's path, which reads them, decides then).
    func decideNow(path: String, authorization: String?, isControlSocket: Bool) -> Decision? {
        if isControlSocket || path == "/health" || ConsoleController.isPublic(path: path) { return .allow }
        return store.cachedActiveAPIKeys().map { decide(path: path, authorization: authorization, activeKeys: $0) }
    }

    /// The id of the active key in an `Authorization` header, from the keys in memory; nil without one.
    func keyID(authorization: String?) -> String? {
        guard let authorization, authorization.hasPrefix("Bearer "), let active = store.cachedActiveAPIKeys() else { return nil }
        return active[Store.keyHash(String(authorization.dropFirst(7)).trimmingCharacters(in: .whitespaces))]?.id
    }

    private func decide(path: String, authorization: String?, activeKeys: [String: APIKeyRecord]) -> Decision {
        guard !activeKeys.isEmpty else { return .allow }
        guard let authorization, authorization.hasPrefix("Bearer ") else {
            return .deny(
                .unauthorized, "an API key is required: send Authorization: Bearer <key> (create one with `modelctl keys create`)", retryAfter: nil)
        }
        guard let key = store.authenticate(key: String(authorization.dropFirst(7)).trimmingCharacters(in: .whitespaces), among: activeKeys) else {
            return .deny(.unauthorized, "invalid or revoked API key", retryAfter: nil)
        }
        if !path.hasPrefix("/v1/") && path != "/metrics" && !path.hasPrefix("/api/v1/llm/") && !OllamaController.inferencePaths.contains(path)
            && key.scope != "admin"
        {
            return .deny(.forbidden, "API key \(key.name) has scope \(key.scope); \(path) needs an admin key", retryAfter: nil)
        }
        if let rate = key.ratePerMinute, let wait = limiter.take(key: key.id, perMinute: rate) {
            return .deny(.tooManyRequests, "API key \(key.name) is limited to \(rate) requests per minute; retry in \(wait) s", retryAfter: wait)
        }
        return .allow
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
