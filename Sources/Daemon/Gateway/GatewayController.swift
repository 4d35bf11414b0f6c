import Catalog
import Foundation
import Hummingbird
import Launchers
import Logging
import NIOCore
import Synchronization
import Transfer

/// The OpenAI-compatible gateway: `/v1/*` on the daemon, routed by `model` to a ready run.
///
/// `model` may be a run name, an engine's served name, or the model as it was started (catalog ref or repo
/// id). Several ready runs of one model share the load by outstanding requests. Bodies pass through
/// untouched except `model`, which becomes the engine's served name; replies (JSON or SSE) are relayed
/// chunk by chunk, and a client that goes away cancels the upstream request.
struct GatewayController {
    let supervisor: Supervisor
    let catalog: ModelCatalog
    let store: Store
    /// How long a request waits for an on-demand start.
    let startTimeout: Duration
    /// Counts the tokens of relayed replies and their time to first token.
    let metrics: DaemonMetrics
    let outstanding = OutstandingRequests()
    /// The largest request body the gateway accepts.
    static let maxBody = 32 << 20

    func addRoutes(to router: Router<DaemonRequestContext>) {
        router.get("/v1/models", use: models)
        for path in ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"] {
            router.post(RouterPath(path)) { request, context in try await relay(request, context: context, path: path) }
        }
    }

    @Sendable func models(_ request: Request, context: DaemonRequestContext) async throws -> Response {
        let runs = await supervisor.list().filter { $0.state == .ready }
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
            return openAIError(.contentTooLarge, "the request body is larger than \(Self.maxBody >> 20) MiB", type: "BadRequestError")
        }
        guard var object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any] else {
            return openAIError(.badRequest, "the body must be a JSON object", type: "BadRequestError")
        }
        guard let model = object["model"] as? String, !model.isEmpty else {
            return openAIError(.badRequest, "model is required", type: "BadRequestError", param: "model")
        }
        var candidates = await readyRuns(model)
        if candidates.isEmpty {
            do {
                candidates = try await startOnDemand(model, logger: context.logger)
            } catch let error as OnDemandError {
                return openAIError(error.status, error.message, type: error.status == .notFound ? "NotFoundError" : "ServiceUnavailableError", param: "model")
            }
        }
        let run = outstanding.leastBusy(candidates.map(\.runID)).flatMap { id in candidates.first { $0.runID == id } } ?? candidates[0]
        var payload = Data(body.readableBytesView)
        if run.servedName != model {
            object["model"] = run.servedName
            payload = try JSONSerialization.data(withJSONObject: object)
        }
        let upstream = Transfer.HTTPRequest(
            method: "POST", url: run.endpoint! + path,
            headers: [("Content-Type", "application/json"), ("Accept", request.headers[.accept] ?? "*/*")],
            body: payload, stallTimeout: .seconds(600))
        let reply = try await UpstreamRelay.start(upstream, runID: run.runID, outstanding: outstanding, logger: context.logger)
        return metrics.meterReply(reply, model: run.model, started: started)
    }
}

extension GatewayController {
    private func matches(_ run: RunInfo, _ model: String) -> Bool {
        [run.name, run.servedName, run.model].contains { $0.caseInsensitiveCompare(model) == .orderedSame }
    }

    private func readyRuns(_ model: String) async -> [RunInfo] {
        await supervisor.list().filter { $0.state == .ready && $0.endpoint != nil && matches($0, model) }
    }

    /// A request for a pulled model with no ready run starts it on its default engine (or joins a start
    /// already under way) and waits, bounded by ``startTimeout``.
    private func startOnDemand(_ model: String, logger: Logger) async throws -> [RunInfo] {
        let existing = await supervisor.list().first { $0.state == .starting && matches($0, model) }
        let runID: String
        if let existing {
            runID = existing.runID
        } else {
            guard let ref = try? ModelRef(parsing: model), let resolved = try? catalog.resolve(ref),
                let version = try store.versions(source: resolved.source.rawValue, repo: resolved.repo).first(where: { $0.version.state == .ready }),
                let path = version.version.path
            else {
                throw OnDemandError(status: .notFound, message: "model \(model) is not running here and not pulled: `modelctl pull \(model)`, then `modelctl start \(model)`")
            }
            let engine = resolved.entry.flatMap { EngineKind(rawValue: $0.defaultEngine) } ?? .builtin
            let spec = LaunchSpec(engine: engine, modelPath: path, servedName: model)
            do {
                // The run gets a generated name (names cannot hold `/`); it answers to `model` as its served name.
                let run = try await supervisor.start(RunRequest(name: nil, model: model, versionID: version.version.id, spec: spec))
                logger.info("on-demand start", metadata: ["model": "\(model)", "engine": "\(engine.rawValue)", "run": "\(run.runID)"])
                runID = run.runID
            } catch let error as LaunchError {
                throw OnDemandError(status: .serviceUnavailable, message: "cannot start \(model) on demand: \(error.message)")
            }
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

struct OnDemandError: Error {
    var status: HTTPResponse.Status
    var message: String
}

/// Counts requests in flight per run, for least-busy routing.
final class OutstandingRequests: Sendable {
    private let counts = Mutex<[String: Int]>([:])

    func leastBusy(_ ids: [String]) -> String? {
        counts.withLock { counts in ids.min { counts[$0, default: 0] < counts[$1, default: 0] } }
    }

    func begin(_ id: String) { counts.withLock { $0[id, default: 0] += 1 } }
    func end(_ id: String) { counts.withLock { $0[id, default: 0] -= 1 } }
}

/// One upstream request relayed to the client: libcurl on its own thread hands chunks to the response
/// writer through a small buffer, waiting while the buffer is full (backpressure).
enum UpstreamRelay {
    static func start(_ request: Transfer.HTTPRequest, runID: String, outstanding: OutstandingRequests, logger: Logger) async throws -> Response {
        let transfer = try HTTPTransfer()
        let (chunks, continuation) = AsyncThrowingStream<ByteBuffer, any Error>.makeStream(bufferingPolicy: .unbounded)
        let gate = RelayGate(capacity: 16)
        let head = AsyncHead()
        outstanding.begin(runID)
        let thread = Thread {
            defer { outstanding.end(runID) }
            do {
                let final = try transfer.stream(request, onHead: { head.set($0) }) { bytes in
                    guard gate.waitForRoom() else { return false }
                    continuation.yield(ByteBuffer(bytes: bytes))
                    return true
                }
                head.set(final)
                continuation.finish()
            } catch {
                head.fail(error)
                continuation.finish(throwing: error)
            }
        }
        thread.start()

        let responseHead: HTTPResponseHead
        do {
            responseHead = try await head.value()
        } catch {
            gate.cancel()
            return openAIError(.badGateway, "the engine did not answer: \(error)", type: "BadGatewayError")
        }
        var headers: HTTPFields = [:]
        headers[.contentType] = responseHead.headers["content-type"] ?? "application/json"
        if let cache = responseHead.headers["cache-control"] { headers[.cacheControl] = cache }
        return Response(
            status: HTTPResponse.Status(code: responseHead.status),
            headers: headers,
            body: ResponseBody { writer in
                do {
                    for try await chunk in chunks {
                        try await writer.write(chunk)
                        gate.release()
                    }
                    try await writer.finish(nil)
                } catch {
                    // The client went away (or the engine broke off): stop the upstream transfer.
                    gate.cancel()
                    throw error
                }
            })
    }
}

/// Bounds the chunks in flight between the transfer thread and the writer.
final class RelayGate: @unchecked Sendable {
    private let condition = NSCondition()
    private var inFlight = 0
    private var cancelled = false
    private let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// Blocks the transfer thread while the buffer is full. - Returns: false once cancelled.
    func waitForRoom() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while inFlight >= capacity && !cancelled { condition.wait() }
        inFlight += 1
        return !cancelled
    }

    func release() {
        condition.lock()
        inFlight -= 1
        condition.signal()
        condition.unlock()
    }

    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }
}

/// The upstream response head, set once from the transfer thread and awaited by the handler.
final class AsyncHead: Sendable {
    private let state = Mutex<(result: Result<HTTPResponseHead, any Error>?, waiter: CheckedContinuation<HTTPResponseHead, any Error>?)>((nil, nil))

    func set(_ head: HTTPResponseHead) { resolve(.success(head)) }
    func fail(_ error: any Error) { resolve(.failure(error)) }

    private func resolve(_ result: Result<HTTPResponseHead, any Error>) {
        let waiter = state.withLock { state -> CheckedContinuation<HTTPResponseHead, any Error>? in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(with: result)
    }

    func value() async throws -> HTTPResponseHead {
        try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLock { state -> Result<HTTPResponseHead, any Error>? in
                if let result = state.result { return result }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}

/// An OpenAI-style JSON reply.
func openAIJSON(_ object: [String: Any], status: HTTPResponse.Status = .ok) throws -> Response {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes])
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

/// An OpenAI-style error: `{"error": {"message", "type", "param", "code"}}`.
func openAIError(_ status: HTTPResponse.Status, _ message: String, type: String, param: String? = nil) -> Response {
    let body: [String: Any] = ["error": ["message": message, "type": type, "param": param as Any? ?? NSNull(), "code": status.code]]
    return (try? openAIJSON(body, status: status)) ?? Response(status: status)
}
