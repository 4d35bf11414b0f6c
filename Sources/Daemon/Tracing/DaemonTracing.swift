import Logging
import NIOHTTP1
import OTel
import ServiceLifecycle
import Synchronization
import Tracing

/// The daemon's tracing (docs/tracing.md): OpenTelemetry's tracer for the whole process, set up once when a
/// collector is configured. Spans then come from the router (Hummingbird's `TracingMiddleware`), the gateway's
/// fast path, every call to an engine (``EngineCallSpan``) and pulls. When no collector is configured nothing is
/// set up: no middleware, and the fast path and the engine client skip their spans on one check.
enum DaemonTracing {
    private static let bootstrapped = Mutex(false)

    /// Makes OpenTelemetry's tracer the process's (`InstrumentationSystem`), exporting to `settings`.
    /// - Returns: the exporter's service (batches spans and sends them; flushes what is left on shutdown), to run
    ///   in the daemon's service group.
    /// - Throws: ``ConfigurationError`` when tracing was set up before in this process, or OpenTelemetry refuses
    ///   the settings (such as `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`, which this build does not carry).
    static func bootstrap(_ settings: TracingSettings, environment: [String: String], logger: Logger) throws -> any Service {
        try bootstrapped.withLock { done in
            guard !done else { throw ConfigurationError(key: settings.source, problem: "tracing is already set up in this process") }
            done = true
        }
        var configuration = OTel.Configuration.default
        configuration.serviceName = settings.serviceName
        configuration.diagnosticLogger = .custom(logger)
        configuration.propagators = [.traceContext]
        configuration.metrics.enabled = false
        configuration.logs.enabled = false
        configuration.traces.exporter = .otlp
        configuration.traces.otlpExporter.protocol = .httpProtobuf
        configuration.traces.otlpExporter.endpoint = settings.tracesURL
        // OpenTelemetry applies its variables over the configuration: the endpoint chosen above (the setting wins
        // over them) must stay.
        var environment = environment
        for name in TracingSettings.endpointVariables { environment[name] = nil }
        do {
            return try OTel.bootstrap(configuration: configuration, environment: environment)
        } catch {
            throw ConfigurationError(key: settings.source, problem: "OpenTelemetry refused the settings: \(error)")
        }
    }
}

/// The span of one request to an engine, a child of the request's span: its `traceparent` goes to the engine in
/// the request's headers, so the engine's own spans (vLLM's, SGLang's) join the trace. It records the reply's
/// status and the time to its first byte (the first token of a streamed reply), and ends with the exchange.
final class EngineCallSpan: Sendable {
    private let span: any Span
    private let sent = ContinuousClock.now
    private let firstByte = Atomic<Bool>(false)
    private let failure = Atomic<Bool>(false)
    private let ended = Atomic<Bool>(false)

    /// Starts the span under `parent` and adds its `traceparent` to `request`'s headers.
    init(_ request: inout EngineRequest, parent: InstrumentationContext) {
        span = startSpan("engine \(request.path)", context: parent, ofKind: .client)
        span.updateAttributes { attributes in
            attributes["http.request.method"] = request.method.rawValue
            attributes["server.address"] = request.address.host
            attributes["server.port"] = request.address.port
            attributes["url.path"] = request.path
        }
        var headers = request.headers
        InstrumentationSystem.instrument.inject(span.context, into: &headers, using: EngineHeadersInjector())
        request.headers = headers
    }

    /// The reply's head arrived.
    func replied(status: Int) {
        span.attributes["http.response.status_code"] = status
        if status >= 500 { span.setStatus(SpanStatus(code: .error)) }
    }

    /// A piece of the reply's body arrived: the first one is the time to first token.
    func received() {
        guard firstByte.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        let elapsed = ContinuousClock.now - sent
        let milliseconds = Double(elapsed.components.seconds) * 1e3 + Double(elapsed.components.attoseconds) / 1e15
        span.attributes["modeld.time_to_first_token_ms"] = milliseconds
        span.addEvent("first token")
    }

    /// The exchange failed (no reply, or a reply broken off); the first failure is recorded.
    func failed(_ error: any Error) {
        guard !ended.load(ordering: .relaxed), failure.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        span.recordError(error)
        span.setStatus(SpanStatus(code: .error, message: "\(error)"))
    }

    /// The exchange is over; called once or more, the first call ends the span.
    func end() {
        guard ended.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        span.end()
    }
}

/// Writes trace headers (`traceparent`, `tracestate`) into an engine request's header list.
struct EngineHeadersInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [(String, String)]) {
        carrier.append((key, value))
    }
}

/// Reads trace headers from a request head the gateway's fast path holds.
struct NIOHeadersExtractor: Extractor {
    func extract(key: String, from carrier: HTTPHeaders) -> String? {
        carrier.first(name: key)
    }
}
