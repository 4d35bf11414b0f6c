import Catalog
import Foundation
import Hummingbird
import Launchers
import Logging
import ModelStore
import ModelText
import ModeldAPI
import NIOCore
import Synchronization
import Transfer

/// The OpenAI-compatible gateway: `/v1/*` on the daemon, routed by `model` to a ready run.
///
/// `model` may be a run name, an engine's served name, or the model as it was started (catalog ref or repo
/// id). Several ready runs of one model share the load by outstanding requests. Bodies pass through
/// byte for byte except `model`'s value, which becomes the engine's served name; replies (JSON or SSE) are relayed
/// chunk by chunk, and a client that goes away cancels the upstream request.
struct GatewayController {
    let supervisor: Supervisor
    let catalog: ModelCatalog
    let store: Store
    /// How long a request waits for an on-demand start.
    let startTimeout: Duration
    /// The keep-alive of runs started on demand.
    let onDemandKeepAlive: KeepAlive
    let loadedRuns: LoadedRuns
    var outstanding: OutstandingRequests { loadedRuns.activity }
    /// Counts the tokens of relayed replies and their time to first token.
    let metrics: DaemonMetrics
    /// The largest request body the gateway accepts.
    static let maxBody = 32 << 20
    /// The routes whose requests go to an engine.
    static let relayedPaths = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]

    func addRoutes(to router: Router<DaemonRequestContext>) {
        router.get("/v1/models", use: models)
        for path in Self.relayedPaths {
            router.post(RouterPath(path)) { request, context in try await relay(request, context: context, path: path) }
        }
    }

    @Sendable func models(_ request: Request, context: DaemonRequestContext) async throws -> Response {
        let runs = supervisor.snapshot.filter { $0.state == .ready }
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

    private func relay(_ request: Request, context: DaemonRequestContext, path: String) async throws -> Response {
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
        let run = try await route(model, logger: context.logger)
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
            throw APIError(.badGateway, "\(error)")
        }
        if members.bool("stream") == true {
            let reply = try await UpstreamRelay.start(upstream, runID: run.runID, outstanding: outstanding)
            return metrics.meterReply(reply, model: run.model, started: started)
        }
        let reply: (head: Transfer.HTTPResponseHead, body: ByteBuffer)
        do {
            reply = try await UpstreamRelay.fetch(upstream, runID: run.runID, outstanding: outstanding)
        } catch {
            throw APIError.engineDidNotAnswer(error)
        }
        let contentType = reply.head.headers["content-type"] ?? "application/json"
        if (200..<300).contains(reply.head.status), contentType.lowercased().hasPrefix("application/json") {
            metrics.recordUsage(ofReply: reply.body.readableBytesView, model: run.model)
        }
        return Response(
            status: HTTPResponse.Status(code: reply.head.status), headers: [.contentType: contentType],
            body: .init(byteBuffer: reply.body))
    }
}

extension GatewayController {
    /// The run that answers a request for `model`: the least busy ready one, else one started on demand.
    /// Shared by the OpenAI routes and the LLM API.
    /// - Parameter prefer: which runs to choose among, when any of the candidates is one (the LLM API's
    ///   structured output prefers engines that can constrain it); else all candidates are.
    /// - Throws: ``OnDemandError`` when no run is ready and none can be started.
    func route(_ model: String, logger: Logger, prefer: (RunInfo) -> Bool = { _ in true }) async throws -> RunInfo {
        var candidates = Self.readyRuns(model, in: supervisor)
        if candidates.isEmpty {
            candidates = try await startOnDemand(model, logger: logger)
        }
        let preferred = candidates.filter(prefer)
        return Self.leastBusy(preferred.isEmpty ? candidates : preferred, outstanding: outstanding)
    }

    /// The candidate with the fewest requests in flight.
    static func leastBusy(_ candidates: [RunInfo], outstanding: OutstandingRequests) -> RunInfo {
        outstanding.leastBusy(candidates.map(\.runID)).flatMap { id in candidates.first { $0.runID == id } } ?? candidates[0]
    }

    /// Whether `model` names this run: its name, its served name, or the model it was started with.
    static func matches(_ run: RunInfo, _ model: String) -> Bool {
        sameName(run.name, model) || sameName(run.servedName, model) || sameName(run.model, model)
    }

    /// Whether two names are equal ignoring case: ASCII names byte by byte (every request compares its model
    /// with each run's names), others as Foundation compares them.
    static func sameName(_ a: String, _ b: String) -> Bool {
        var a = a, b = b
        let ascii = a.withUTF8 { a in b.withUTF8 { b in
            guard !a.contains(where: { $0 >= 0x80 }), !b.contains(where: { $0 >= 0x80 }) else { return nil as Bool? }
            return a.count == b.count && zip(a, b).allSatisfy { lowered($0) == lowered($1) }
        } }
        return ascii ?? (a.caseInsensitiveCompare(b) == .orderedSame)
    }

    private static func lowered(_ byte: UInt8) -> UInt8 {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte
    }

    /// The ready runs that answer to `model`.
    static func readyRuns(_ model: String, in supervisor: Supervisor) -> [RunInfo] {
        supervisor.snapshot.filter { $0.state == .ready && $0.endpoint != nil && matches($0, model) }
    }

    /// A request for a pulled model with no ready run starts it on its default engine (or joins a start
    /// already under way, or starts again a run that was unloaded when idle) and waits, bounded by
    /// ``startTimeout``.
    private func startOnDemand(_ model: String, logger: Logger) async throws -> [RunInfo] {
        let runs = await supervisor.list().filter { Self.matches($0, model) }
        let runID: String
        if let existing = runs.first(where: { $0.state == .starting }) {
            runID = existing.runID
        } else if let unloaded = runs.last(where: { $0.keepAlive != nil && !$0.state.isLive }) {
            // A run with a keep-alive that was unloaded when idle (or stopped): load it again.
            runID = try await loadedRuns.load(model, strict: true) {
                do {
                    return try await supervisor.resume(unloaded.runID)
                } catch let error as LaunchError {
                    throw OnDemandError(status: .serviceUnavailable, message: "cannot start \(unloaded.name) again: \(error.message)")
                }
            }.runID
            logger.info("on-demand restart", metadata: ["model": "\(model)", "run": "\(runID)"])
        } else {
            guard let ref = try? ModelRef(parsing: model), let resolved = try? catalog.resolve(ref),
                let version = try await store.versions(source: resolved.source.rawValue, repo: resolved.repo).first(where: { $0.version.state == .ready }),
                let path = version.version.path
            else {
                throw OnDemandError(status: .notFound, message: "model \(model) is not running here and not pulled: `modelctl pull \(model)`, then `modelctl start \(model)`")
            }
            let engine = resolved.entry.flatMap { EngineKind(rawValue: $0.defaultEngine) } ?? .builtin
            let spec = LaunchSpec(engine: engine, modelPath: path, servedName: model)
            // The run gets a generated name (names cannot hold `/`); it answers to `model` as its served name.
            let request = RunRequest(
                name: nil, model: model, versionID: version.version.id, spec: spec, keepAlive: onDemandKeepAlive.seconds, onDemand: true)
            runID = try await loadedRuns.load(model, strict: true) {
                do {
                    return try await supervisor.start(request)
                } catch let error as LaunchError {
                    throw OnDemandError(status: .serviceUnavailable, message: "cannot start \(model) on demand: \(error.message)")
                }
            }.runID
            logger.info("on-demand start", metadata: ["model": "\(model)", "engine": "\(engine.rawValue)", "run": "\(runID)"])
        }
        let settled = try await supervisor.waitUntilSettled(runID, timeout: startTimeout)
        guard settled.state == .ready else {
            throw OnDemandError(
                status: .serviceUnavailable,
                message: "model \(model) did not become ready (\(settled.state.rawValue)\(settled.reason.map { ": \($0)" } ?? "")); see `modelctl logs \(settled.name)`")
        }
        return [settled]
    }
}

/// No run is ready for a model and none can be started: 404 for a model that is not pulled, else 503.
struct OnDemandError: APIErrorConvertible {
    var status: HTTPResponse.Status
    var message: String

    var apiError: APIError { APIError(status, message, field: "model") }
}

/// Requests in flight per run, for least-busy routing, and when each run was last used, for idle unload
/// and least-recently-used eviction.
final class OutstandingRequests: Sendable {
    private struct Activity {
        var inFlight = 0
        var lastUsed = ContinuousClock.now
    }
    private let runs = Mutex<[String: Activity]>([:])

    func leastBusy(_ ids: [String]) -> String? {
        runs.withLock { runs in ids.min { runs[$0]?.inFlight ?? 0 < runs[$1]?.inFlight ?? 0 } }
    }

    func begin(_ id: String) { touch(id, by: 1) }
    func end(_ id: String) { touch(id, by: -1) }

    private func touch(_ id: String, by change: Int) {
        let now = ContinuousClock.now
        runs.withLock { runs in
            var activity = runs[id] ?? Activity()
            activity.inFlight += change
            activity.lastUsed = now
            runs[id] = activity
        }
    }

    /// Requests in flight on a run.
    func inFlight(_ id: String) -> Int { runs.withLock { $0[id]?.inFlight ?? 0 } }

    /// When a run was last used; a run seen for the first time counts as used now.
    func lastUsed(_ id: String) -> ContinuousClock.Instant {
        runs.withLock { runs in
            let activity = runs[id] ?? Activity()
            runs[id] = activity
            return activity.lastUsed
        }
    }

    /// ``lastUsed(_:)`` as a wall-clock date, for the API.
    func lastUsedDate(_ id: String) -> Date {
        Date(timeIntervalSinceNow: -((ContinuousClock.now - lastUsed(id)) / .seconds(1)))
    }

    /// Forgets runs that no longer exist.
    func retain(only ids: Set<String>) {
        runs.withLock { runs in runs = runs.filter { ids.contains($0.key) || $0.value.inFlight > 0 } }
    }
}

/// One upstream request relayed to the client through ``EngineClient``; the run counts as busy until the
/// exchange ends.
enum UpstreamRelay {
    /// The reply relayed chunk by chunk as the engine sends it, at the client's pace; a client that goes away
    /// cancels the engine's request.
    /// - Throws: ``APIError/engineDidNotAnswer(_:)`` when the engine did not answer at all.
    static func start(_ request: EngineRequest, runID: String, outstanding: OutstandingRequests, client: EngineClient = .shared) async throws -> Response {
        let upstream: EngineReply
        do {
            upstream = try await open(request, runID: runID, outstanding: outstanding, client: client)
        } catch {
            throw APIError.engineDidNotAnswer(error)
        }
        var headers: HTTPFields = [:]
        headers[.contentType] = upstream.head.headers["content-type"] ?? "application/json"
        if let cache = upstream.head.headers["cache-control"] { headers[.cacheControl] = cache }
        return Response(
            status: HTTPResponse.Status(code: upstream.status),
            headers: headers,
            body: ResponseBody { writer in
                do {
                    for try await chunk in upstream.body {
                        try await writer.write(chunk)
                    }
                    try await writer.finish(nil)
                } catch {
                    // The client went away (or the engine broke off): stop the upstream request.
                    upstream.cancel()
                    throw error
                }
            })
    }

    /// A reply that is not streamed, read whole, to be sent in one piece.
    /// - Throws: when the engine did not answer or broke off.
    static func fetch(
        _ request: EngineRequest, runID: String, outstanding: OutstandingRequests, client: EngineClient = .shared
    ) async throws -> (head: Transfer.HTTPResponseHead, body: ByteBuffer) {
        outstanding.begin(runID)
        return try await client.fetch(request) { outstanding.end(runID) }
    }

    /// Sends `request` and returns once the reply's head has arrived.
    /// - Throws: when the engine did not answer at all.
    static func open(
        _ request: EngineRequest, runID: String, outstanding: OutstandingRequests, client: EngineClient = .shared
    ) async throws -> EngineReply {
        outstanding.begin(runID)
        return try await client.send(request) { outstanding.end(runID) }
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
