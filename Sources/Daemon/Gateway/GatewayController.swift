import Catalog
import Foundation
import Hummingbird
import Launchers
import Logging
import ModelStore
import ModelText
import ModeldAPI
import NIOCore
import NIOHTTP1
import Transfer

/// The OpenAI-compatible gateway: `/v1/*` on the daemon, routed by `model` to a local run or an upstream.
///
/// `model` may be a run name, an engine's served name, the model as it was started (catalog ref or repo id), a
/// model an upstream serves, or a model group (docs/gateway.md). ``BackendRouter`` lists the backends in the order
/// of the strategy; each is tried in turn while the attempt fails before its reply's first byte (no connection,
/// a time-out, 5xx, 429), at most `max_failovers` times after the first; a reply that has begun is never retried.
/// Local runs come through ``RunScheduler`` (the least busy ready run, else one started on demand). Bodies pass
/// through byte for byte except `model`'s value, which becomes the backend's name for it; replies (JSON or SSE)
/// are forwarded chunk by chunk (``EngineProxy``), and a client that goes away cancels the backend's request.
/// Most requests for local runs never reach this controller: ``GatewayFastPath`` forwards them below the router.
struct GatewayController {
    let scheduler: RunScheduler
    let router: BackendRouter
    /// Counts the tokens of forwarded replies and their time to first token.
    let metrics: DaemonMetrics
    /// Records each request's usage.
    let usage: UsageLedger
    var client = EngineClient.shared
    /// The model of requests that name none (the `default_model` setting).
    var defaultModel: String? = nil
    /// The largest request body the gateway accepts.
    static let maxBody = 32 << 20
    /// The routes whose requests go to an engine.
    static let engineRoutes = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
    /// The most of a failed attempt's reply kept, to answer with when no backend is left.
    static let maxFailedReply = 64 << 10

    func addRoutes(to router: Router<DaemonRequestContext>) {
        router.get("/v1/models", use: models)
        for path in Self.engineRoutes {
            router.post(RouterPath(path)) { request, context in try await forward(request, context: context, path: path) }
        }
    }

    /// The ready runs, then the models upstreams serve and the model groups.
    @Sendable func models(_ request: Request, context: DaemonRequestContext) async throws -> Response {
        let runs = scheduler.supervisor.snapshot.filter { $0.state == .ready }
        var seen = Set<String>()
        var data: [[String: Any]] = runs.compactMap { run in
            guard seen.insert(run.name).inserted else { return nil }
            return [
                "id": run.name, "object": "model", "created": Int(run.createdAt.timeIntervalSince1970), "owned_by": "modeld",
                "engine": run.engine.rawValue, "model": run.model,
            ]
        }
        for upstream in router.upstreams where upstream.record.enabled {
            for model in upstream.record.servedModels where seen.insert(model).inserted {
                let created = Int(upstream.record.createdAt.timeIntervalSince1970)
                data.append(["id": model, "object": "model", "created": created, "owned_by": upstream.backend])
            }
        }
        for group in try await router.store.modelGroups() where seen.insert(group.name).inserted {
            data.append(["id": group.name, "object": "model", "created": Int(group.createdAt.timeIntervalSince1970), "owned_by": "modeld"])
        }
        return try openAIJSON(["object": "list", "data": data])
    }

    /// Why an attempt failed before its first byte, and the reply it got, if any.
    private struct Failure {
        /// `connect`, `timeout`, `closed`, `429`, `5xx` or `unavailable`: the `reason` label of the failover metric.
        var reason: String
        var detail: String
        var reply: (status: Int, headers: [String: String], body: ByteBuffer)?
    }

    /// One attempt's end: a reply to give the client, or a failure to fail over from.
    private enum Attempt {
        case answered(Response)
        case failed(Failure)
    }

    private func forward(_ request: Request, context: DaemonRequestContext, path: String) async throws -> Response {
        let started = ContinuousClock.now
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: Self.maxBody)
        } catch {
            throw APIError(.contentTooLarge, "the request body is larger than \(Self.maxBody >> 20) MiB")
        }
        do {
            try JSONLimits.check(body.readableBytesView)
        } catch {
            throw APIError.badRequest("malformed JSON body: \(error.message)")
        }
        guard let members = JSONMembers(body.readableBytesView) else {
            throw APIError.badRequest("the body must be a JSON object")
        }
        // Without `model`, the `default_model` setting names it (its run's served name is set in the body).
        let given = members.string("model").flatMap { $0.isEmpty ? nil : $0 }
        guard let model = given ?? defaultModel else {
            throw APIError.badRequest("model is required (or set the default_model setting)", field: "model")
        }
        try Authorizer.check(model: model, for: context.apiKey)
        let exchange = Exchange(
            model: model, given: given, route: path, members: members, body: body, accept: request.headers[.accept] ?? "*/*",
            streamed: members.bool("stream") == true, started: started, keyID: context.apiKey?.id)
        var attempts = 0
        var lastFailure: Failure?
        var unavailable: SchedulerError?
        var notFound: SchedulerError?
        /// The backend that failed last: the next attempt is a failover from it.
        var failedFrom: String?
        for backend in router.plan(model) {
            guard attempts <= router.settings.maxFailovers else { break }
            var lease: RunLease?
            switch backend {
            case .run(let run):
                guard let leased = scheduler.acquire(run: run) else { continue }
                lease = leased
            case .onDemand(let target):
                do {
                    lease = try await scheduler.acquire(target)
                } catch let error as SchedulerError {
                    // Not pulled here: not a backend of this model, nothing failed.
                    if case .notFound = error {
                        notFound = error
                        continue
                    }
                    unavailable = error
                }
            case .upstream:
                break
            }
            if let from = failedFrom, let reason = lastFailure?.reason { metrics.recordFailover(from: from, reason: reason) }
            attempts += 1
            let outcome: Attempt
            switch backend {
            case .upstream(let upstream, let served):
                outcome = await attempt(exchange, upstream: upstream, model: served, context: context, attempt: attempts)
            default:
                if let lease {
                    outcome = await attempt(exchange, backend: "local:\(lease.run.name)", lease: lease, context: context, attempt: attempts)
                } else {
                    outcome = .failed(Failure(reason: "unavailable", detail: unavailable?.message ?? "no run"))
                    log(exchange, backend: backend.name, attempt: attempts, outcome: outcome, context: context)
                }
            }
            switch outcome {
            case .answered(let response):
                return response
            case .failed(let failure):
                lastFailure = failure
                failedFrom = backend.name
            }
        }
        // No backend answered: the last one's own error reply (a 429 keeps its Retry-After), else a 502, 503 or 404.
        // The request's usage row names the backend that failed last.
        let failed = failedFrom.map { exchange.ticket(ledger: usage, backend: $0, model: model) }
        if let reply = lastFailure?.reply {
            failed?.record(status: reply.status, usage: nil)
            var headers: HTTPFields = [.contentType: reply.headers["content-type"] ?? "application/json"]
            if let retry = reply.headers["retry-after"] { headers[.retryAfter] = retry }
            return Response(status: .init(code: reply.status), headers: headers, body: .init(byteBuffer: reply.body))
        }
        let error: any APIErrorConvertible =
            if let lastFailure, lastFailure.reason != "unavailable" {
                APIError(.badGateway, "no backend of \(model) answered: \(lastFailure.detail)")
            } else if let unavailable {
                unavailable
            } else if !router.servesLocallyOnly(model) {
                SchedulerError.unavailable(
                    "no backend of \(model) can take it now: its upstreams are cooling down or at their max_concurrency (`modelctl upstream list`)")
            } else {
                notFound ?? SchedulerError.notFound("model \(model) is not running here and not pulled: `modelctl pull \(model)`")
            }
        failed?.record(status: error.apiError.status, usage: nil)
        throw error
    }

    /// A request under way, as the attempts need it.
    private struct Exchange: Sendable {
        let model: String
        /// The model the body names; nil when `default_model` named it.
        let given: String?
        let route: String
        let members: JSONMembers
        let body: ByteBuffer
        let accept: String
        let streamed: Bool
        let started: ContinuousClock.Instant
        let keyID: String?

        /// The request's usage account on a backend that serves it as `model`.
        func ticket(ledger: UsageLedger, backend: String, model: String) -> UsageTicket {
            UsageTicket(ledger: ledger, keyID: keyID, model: model, backend: backend, route: route, started: started)
        }

        /// The body with `model` named as the backend names it (set when the body named none).
        func payload(for name: String) -> ByteBuffer {
            name == given ? body : ByteBuffer(bytes: members.setting("model", to: JSONMembers.encode(name)))
        }
    }

    /// An attempt on a local run, holding `lease` until its reply ends.
    private func attempt(_ exchange: Exchange, backend: String, lease: RunLease, context: DaemonRequestContext, attempt: Int) async -> Attempt {
        let run = lease.run
        RequestTag.mark(model: run.model, streamed: exchange.streamed)
        let request: EngineRequest
        do {
            request = try EngineRequest(
                endpoint: run.endpoint ?? "", path: exchange.route,
                headers: [("Content-Type", "application/json"), ("Accept", exchange.accept)], body: exchange.payload(for: run.servedName))
        } catch {
            lease.release()
            return .failed(Failure(reason: "connect", detail: "\(error)"))
        }
        var ticket = exchange.ticket(ledger: usage, backend: backend, model: run.model)
        // A stream carries no usage unless the client asked for it: its prompt may have to be counted.
        if exchange.streamed, let directory = run.modelPath { ticket.prompt = UsageLedger.PromptSource(body: exchange.body, modelPath: directory) }
        let outcome = await send(request, exchange: exchange, ticket: ticket, onEnd: { lease.release() })
        log(exchange, backend: backend, attempt: attempt, outcome: outcome, context: context)
        return outcome
    }

    /// An attempt on an upstream: counted in its in-flight requests, timed to the first byte, and a failure
    /// counted towards its cooldown.
    private func attempt(_ exchange: Exchange, upstream: Upstream, model: String, context: DaemonRequestContext, attempt: Int) async -> Attempt {
        let backend = upstream.backend
        RequestTag.mark(model: model, streamed: exchange.streamed)
        let request: EngineRequest
        do {
            request = try upstream.request(route: exchange.route, body: exchange.payload(for: model), accept: exchange.accept, model: model)
        } catch {
            return .failed(Failure(reason: "connect", detail: "\(error)"))
        }
        router.began(backend)
        let sent = ContinuousClock.now
        let router = self.router
        var ticket = exchange.ticket(ledger: usage, backend: backend, model: model)
        (ticket.costIn, ticket.costOut, ticket.metrics) = (upstream.record.costIn, upstream.record.costOut, metrics)
        let outcome = await send(
            request, exchange: exchange, ticket: ticket, onEnd: { router.ended(backend) },
            onFirstToken: { router.firstToken(backend, after: .now - sent) })
        switch outcome {
        case .answered: break
        case .failed(let failure):
            metrics.recordUpstreamRequest(backend: backend, code: failure.reply.map { String($0.status) } ?? "error")
            router.failed(upstream)
        }
        log(exchange, backend: backend, attempt: attempt, outcome: outcome, context: context)
        return outcome
    }

    /// Sends one attempt and, when its reply begins well, forwards it; a reply that begins with 5xx or 429, or none,
    /// is a failure to fail over from.
    /// - Parameters:
    ///   - ticket: the request's usage account on this backend (its model is the token metrics' `model` label),
    ///     recorded when a reply that began well ends.
    ///   - onEnd: called once when the exchange is over.
    ///   - onFirstToken: called when a stream's first chunk arrives, or a whole reply has (the time to first token).
    private func send(
        _ request: EngineRequest, exchange: Exchange, ticket: UsageTicket, onEnd: @escaping @Sendable () -> Void,
        onFirstToken: @escaping @Sendable () -> Void = {}
    ) async -> Attempt {
        let backend = ticket.backend, tokenModel = ticket.model
        let isUpstream = backend.hasPrefix("upstream:")
        if exchange.streamed {
            let reply: EngineReply
            do {
                reply = try await client.send(request, onEnd: onEnd)
            } catch {
                return .failed(Self.failure(error))
            }
            if Self.failsOver(reply.status) {
                var kept = ByteBuffer()
                do {
                    for try await var chunk in reply.body where kept.readableBytes < Self.maxFailedReply { kept.writeBuffer(&chunk) }
                } catch {}
                reply.cancel()
                return .failed(Self.failure(status: reply.status, headers: reply.head.headers, body: kept))
            }
            if isUpstream { metrics.recordUpstreamRequest(backend: backend, code: String(reply.status)) }
            let relayed = EngineProxy.relay(reply, firstChunk: onFirstToken)
            return .answered(metrics.meterReply(relayed, model: tokenModel, started: exchange.started, ticket: ticket))
        }
        let reply: (head: Transfer.HTTPResponseHead, body: ByteBuffer)
        do {
            reply = try await client.fetch(request, onEnd: onEnd)
        } catch {
            return .failed(Self.failure(error))
        }
        onFirstToken()
        if Self.failsOver(reply.head.status) {
            let kept = reply.body.getSlice(at: reply.body.readerIndex, length: min(reply.body.readableBytes, Self.maxFailedReply)) ?? ByteBuffer()
            return .failed(Self.failure(status: reply.head.status, headers: reply.head.headers, body: kept))
        }
        if isUpstream { metrics.recordUpstreamRequest(backend: backend, code: String(reply.head.status)) }
        let contentType = reply.head.headers["content-type"] ?? "application/json"
        var usage: ReplyMeter.Usage?
        if (200..<300).contains(reply.head.status), contentType.lowercased().hasPrefix("application/json") {
            usage = metrics.recordUsage(ofReply: reply.body.readableBytesView, model: tokenModel)
        }
        ticket.record(status: reply.head.status, usage: usage)
        return .answered(
            Response(status: HTTPResponse.Status(code: reply.head.status), headers: [.contentType: contentType], body: .init(byteBuffer: reply.body)))
    }

    /// Replies that another backend may answer better: server errors and rate limits.
    private static func failsOver(_ status: Int) -> Bool { status == 429 || status >= 500 }

    private static func failure(_ error: any Error) -> Failure {
        let reason: String =
            switch error {
            case EngineClientError.noReplyInTime, ChannelError.connectTimeout: "timeout"
            case EngineClientError.closedBeforeReply, EngineClientError.closedDuringReply, EngineClientError.stalled: "closed"
            default: "connect"
            }
        return Failure(reason: reason, detail: "\(error)")
    }

    private static func failure(status: Int, headers: [String: String], body: ByteBuffer) -> Failure {
        Failure(reason: status == 429 ? "429" : "5xx", detail: "status \(status)", reply: (status, headers, body))
    }

    /// One attempt's line in the request log: the backend, and how it ended (with the reason of a failure).
    private func log(_ exchange: Exchange, backend: String, attempt: Int, outcome: Attempt, context: DaemonRequestContext) {
        var metadata: Logger.Metadata = ["model": "\(exchange.model)", "backend": "\(backend)", "attempt": "\(attempt)"]
        switch outcome {
        case .answered(let response):
            metadata["status"] = "\(response.status.code)"
            context.logger.info("gateway attempt", metadata: metadata)
        case .failed(let failure):
            metadata["reason"] = "\(failure.reason)"
            metadata["error"] = "\(failure.detail)"
            context.logger.warning("gateway attempt failed", metadata: metadata)
        }
    }
}

/// An OpenAI-style JSON reply.
func openAIJSON(_ object: [String: Any], status: HTTPResponse.Status = .ok) throws -> Response {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes])
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

extension APIError {
    /// The gateway's 502 for an engine that did not answer or broke off before its reply was in.
    static func engineDidNotAnswer(_ error: any Error) -> APIError {
        APIError(.badGateway, "the engine did not answer: \(error)")
    }
}
