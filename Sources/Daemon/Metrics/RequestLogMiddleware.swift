import Hummingbird
import Logging
import Synchronization

/// Logs one line per request and records it in ``DaemonMetrics``, once its response has been written.
///
/// The line carries the request id (the logger's `hb.request.id`, also sent as `X-Request-Id`), the method,
/// the route pattern, the path, the status and the duration. Headers are never logged, so neither are API
/// keys. The outermost middleware: it sees the status of every reply, authentication refusals included.
struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: DaemonMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        metrics.requestStarted()
        let tag = RequestTag()
        var response: Response
        do {
            response = try await RequestTag.$current.withValue(tag) { try await next(request, context) }
        } catch {
            // Nothing below should throw past the envelope middleware; count and log it as the 500 it becomes.
            finished(request, context: context, code: 500, tag: tag, started: started)
            throw error
        }
        // A reply of known length is in memory: it is done now, and its body stays as it is, so that the server
        // sends head and body in one write. A streamed reply (pull progress, logs, SSE) is done when its body
        // is: time it to the last byte.
        let body = response.body
        let code = response.status.code
        guard body.contentLength == nil else {
            finished(request, context: context, code: code, tag: tag, started: started)
            return response
        }
        response.body = ResponseBody(contentLength: body.contentLength) { writer in
            defer { finished(request, context: context, code: code, tag: tag, started: started) }
            try await body.write(writer)
        }
        return response
    }

    private func finished(_ request: Request, context: Context, code: Int, tag: RequestTag, started: ContinuousClock.Instant) {
        metrics.requestFinished()
        let (model, streamed) = tag.value
        // "NotFound" for unknown paths: the raw path would make the label set unbounded.
        Self.record(
            method: request.method.rawValue, route: context.endpointPath ?? "NotFound", path: request.uri.path, code: code, model: model,
            streamed: streamed, duration: ContinuousClock.now - started, logger: context.logger, metrics: metrics)
    }

    /// Records one finished request in `metrics` and logs its line (also for the gateway's fast path, which
    /// answers below the router).
    /// - Parameters:
    ///   - logger: carries the request id (`hb.request.id`).
    ///   - fastPath: the gateway's fast path answered it (``GatewayFastPath``); the line says `via=fast-path`.
    ///   - model: the model of the run that answered; empty when no engine did.
    ///   - streamed: the reply was streamed.
    static func record(
        method: String, route: String, path: String, code: Int, model: String = "", streamed: Bool = false, duration: Duration,
        logger: Logger, metrics: DaemonMetrics, fastPath: Bool = false
    ) {
        metrics.recordRequest(route: route, code: code, model: model, streamed: streamed, duration: duration)
        logger.info(
            "request",
            metadata: {
                var metadata: Logger.Metadata = [
                    "method": .string(method), "route": .string(route), "path": .string(path),
                    "status": .stringConvertible(code), "duration_ms": .stringConvertible(milliseconds(duration)),
                ]
                if fastPath { metadata["via"] = "fast-path" }
                return metadata
            }())
    }

    /// Milliseconds to the microsecond (`12.345`).
    static func milliseconds(_ duration: Duration) -> Double {
        let microseconds = duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000
        return Double(microseconds) / 1000
    }
}

/// What a request's handler learns that its metrics are labelled with: the model of the run that answered, and
/// whether the reply is streamed. ``RequestLogMiddleware`` makes one per request, for the handler to fill in.
final class RequestTag: Sendable {
    @TaskLocal static var current: RequestTag?

    private let state = Mutex<(model: String, streamed: Bool)>(("", false))

    var value: (model: String, streamed: Bool) { state.withLock { $0 } }

    /// Labels the current request (when the router runs it) with the run's model, and as streamed when it is.
    static func mark(model: String, streamed: Bool) {
        current?.state.withLock { $0 = (model, $0.streamed || streamed) }
    }
}
