import Catalog
import Foundation
import Hummingbird
import Launchers
import ModelStore
import ModelText
import ModeldAPI
import NIOCore
import Transfer

/// The OpenAI-compatible gateway: `/v1/*` on the daemon, routed by `model` to a ready run.
///
/// `model` may be a run name, an engine's served name, or the model as it was started (catalog ref or repo
/// id); ``RunScheduler`` chooses the run (the least busy ready one, else one started on demand). Bodies pass
/// through byte for byte except `model`'s value, which becomes the engine's served name; replies (JSON or SSE)
/// are forwarded chunk by chunk (``EngineProxy``), and a client that goes away cancels the engine's request. Most
/// such requests never reach this controller: ``GatewayFastPath`` forwards them below the router.
struct GatewayController {
    let scheduler: RunScheduler
    /// Counts the tokens of forwarded replies and their time to first token.
    let metrics: DaemonMetrics
    /// Records each request's usage.
    let usage: UsageLedger
    /// The largest request body the gateway accepts.
    static let maxBody = 32 << 20
    /// The routes whose requests go to an engine.
    static let engineRoutes = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]

    func addRoutes(to router: Router<DaemonRequestContext>) {
        router.get("/v1/models", use: models)
        for path in Self.engineRoutes {
            router.post(RouterPath(path)) { request, context in try await forward(request, context: context, path: path) }
        }
    }

    @Sendable func models(_ request: Request, context: DaemonRequestContext) async throws -> Response {
        let runs = scheduler.supervisor.snapshot.filter { $0.state == .ready }
        var seen = Set<String>()
        let data: [[String: Any]] = runs.compactMap { run in
            guard seen.insert(run.name).inserted else { return nil }
            return [
                "id": run.name, "object": "model", "created": Int(run.createdAt.timeIntervalSince1970), "owned_by": "modeld",
                "engine": run.engine.rawValue, "model": run.model,
            ]
        }
        return try openAIJSON(["object": "list", "data": data])
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
        guard let model = members.string("model"), !model.isEmpty else {
            throw APIError.badRequest("model is required", field: "model")
        }
        try Authorizer.check(model: model, for: context.apiKey)
        let lease = try await scheduler.acquire(model)
        let run = lease.run
        var ticket = UsageTicket(
            ledger: usage, keyID: context.apiKey?.id, model: run.model, backend: UsageTicket.backend(run: run.name), route: path, started: started)
        var payload = body
        if run.servedName != model {
            payload = ByteBuffer(bytes: members.replacing("model", with: JSONMembers.encode(run.servedName)))
        }
        let upstream: EngineRequest
        do {
            upstream = try EngineRequest(
                endpoint: run.endpoint!, path: path,
                headers: [("Content-Type", "application/json"), ("Accept", request.headers[.accept] ?? "*/*")], body: payload)
        } catch {
            lease.release()
            ticket.record(status: 502, usage: nil)
            throw APIError(.badGateway, "\(error)")
        }
        if members.bool("stream") == true {
            // A stream carries no usage unless the client asked for it: its prompt may have to be counted.
            if let directory = run.modelPath { ticket.prompt = UsageLedger.PromptSource(body: body, modelPath: directory) }
            let reply: Response
            do {
                reply = try await EngineProxy.stream(upstream, lease: lease)
            } catch {
                ticket.record(status: (error as? any APIErrorConvertible)?.apiError.status ?? 502, usage: nil)
                throw error
            }
            return metrics.meterReply(reply, model: run.model, started: started, ticket: ticket)
        }
        let reply: (head: Transfer.HTTPResponseHead, body: ByteBuffer)
        do {
            reply = try await EngineProxy.fetch(upstream, lease: lease)
        } catch {
            ticket.record(status: 502, usage: nil)
            throw APIError.engineDidNotAnswer(error)
        }
        let contentType = reply.head.headers["content-type"] ?? "application/json"
        var counted: ReplyMeter.Usage?
        if (200..<300).contains(reply.head.status), contentType.lowercased().hasPrefix("application/json") {
            counted = metrics.recordUsage(ofReply: reply.body.readableBytesView, model: run.model)
        }
        ticket.record(status: reply.head.status, usage: counted)
        return Response(
            status: HTTPResponse.Status(code: reply.head.status), headers: [.contentType: contentType],
            body: .init(byteBuffer: reply.body))
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
