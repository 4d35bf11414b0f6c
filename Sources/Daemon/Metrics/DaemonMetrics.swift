import Foundation
import Launchers
import ModelStore
import Prometheus
import Synchronization

/// The daemon's Prometheus registry and the series the HTTP layer records, exposed at `GET /metrics`.
///
/// Every daemon context owns its registry, so tests can build several routers in one process; the pull
/// service and the supervisor report into the same registry through ``factory`` (swift-metrics, passed to
/// them rather than bootstrapped globally). Series with a label taken from a request are
/// cached per label set: a request costs one short lock for the lookup, never one held across an await.
final class DaemonMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    /// The swift-metrics factory writing into ``registry``.
    let factory: PrometheusMetricsFactory

    private let runGauges: [RunState: Prometheus.Gauge]
    /// `modeld_http_requests_in_flight`: requests the router has begun and not finished (streams until their end).
    private let inFlight: Prometheus.Gauge
    private let inFlightCount = Atomic<Int>(0)
    private let series = Mutex(Series())
    /// Every model's tokens together, for `GET /api/v1/status`.
    private let promptTokens = Atomic<Int>(0)
    private let completionTokens = Atomic<Int>(0)

    private struct Series {
        var requests: [RequestKey: Prometheus.Counter] = [:]
        var streaming: [RequestKey: Prometheus.Counter] = [:]
        var durations: [String: DurationHistogram] = [:]
        var tokens: [TokenKey: Prometheus.Counter] = [:]
        var firstTokens: [String: DurationHistogram] = [:]
        /// The routing series (``recordUpstreamRequest(backend:code:)`` and the others), by name and label values.
        var backendCounters: [[String]: Prometheus.Counter] = [:]
        var backendUp: [String: Prometheus.Gauge] = [:]
    }

    private struct RequestKey: Hashable {
        var route: String
        var code: Int
        var model: String
    }

    private struct TokenKey: Hashable {
        var model: String
        var kind: TokenKind
    }

    enum TokenKind: String {
        case prompt, completion
    }

    static let requestDurationBuckets: [Duration] = [
        .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
        .seconds(10), .seconds(30), .seconds(60), .seconds(300),
    ]
    static let firstTokenBuckets: [Duration] = [
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(300),
    ]

    init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        factory = PrometheusMetricsFactory(registry: registry)
        let runs = MetricNameDescriptor(metricName: "modeld_runs", unitName: "", helpText: "Runs known to the supervisor, by state")
        runGauges = Dictionary(
            uniqueKeysWithValues: RunState.allCases.map { state in
                (state, registry.makeGauge(descriptor: runs, labels: [("state", state.rawValue)]))
            })
        inFlight = registry.makeGauge(
            descriptor: MetricNameDescriptor(
                metricName: "modeld_http_requests_in_flight", unitName: "", helpText: "HTTP requests begun and not yet answered in full"))
    }

    /// A request began (``requestFinished()`` follows when its reply has been written).
    func requestStarted() {
        inFlight.set(Double(inFlightCount.add(1, ordering: .relaxed).newValue))
    }

    func requestFinished() {
        inFlight.set(Double(inFlightCount.subtract(1, ordering: .relaxed).newValue))
    }

    /// One finished HTTP request: `modeld_http_requests_total{route,code,model}`,
    /// `modeld_http_request_duration_seconds{route}`, and `modeld_streaming_requests_total{route,code,model}` when its
    /// reply was streamed.
    /// - Parameters:
    ///   - route: the router's route pattern (`/api/v1/models/running/{id}`), never the raw path.
    ///   - model: the model of the run that answered (empty for requests that reached no engine): a model the
    ///     scheduler found, never a name as the client wrote it, so the label set stays bounded.
    func recordRequest(route: String, code: Int, model: String = "", streamed: Bool = false, duration: Duration) {
        let key = RequestKey(route: route, code: code, model: model)
        let labels = [("route", route), ("code", String(code)), ("model", model)]
        cached(\.requests, key) { registry.makeCounter(descriptor: Self.requestsDescriptor, labels: labels) }.increment()
        if streamed {
            cached(\.streaming, key) { registry.makeCounter(descriptor: Self.streamingDescriptor, labels: labels) }.increment()
        }
        cached(\.durations, route) {
            registry.makeDurationHistogram(descriptor: Self.durationDescriptor, labels: [("route", route)], buckets: Self.requestDurationBuckets)
        }.record(duration)
    }

    /// Tokens of one reply of the gateway or the LLM API, `modeld_tokens_total{model,kind}`.
    func recordTokens(model: String, kind: TokenKind, count: Int) {
        guard count > 0 else { return }
        switch kind {
        case .prompt: promptTokens.add(count, ordering: .relaxed)
        case .completion: completionTokens.add(count, ordering: .relaxed)
        }
        cached(\.tokens, TokenKey(model: model, kind: kind)) {
            registry.makeCounter(descriptor: Self.tokensDescriptor, labels: [("model", model), ("kind", kind.rawValue)])
        }.increment(by: Int64(count))
    }

    /// Prompt and completion tokens recorded by ``recordTokens(model:kind:count:)`` over every model.
    var tokensServed: (prompt: Int, completion: Int) {
        (promptTokens.load(ordering: .relaxed), completionTokens.load(ordering: .relaxed))
    }

    /// A reply that was not streamed and is larger than this is not read for its usage (embeddings of many inputs).
    static let maxUsageReplyBytes = 8 << 20

    /// Tokens of a gateway reply that was not streamed, from the `usage` of its JSON; a reply larger than
    /// ``maxUsageReplyBytes``, or without `usage`, is not counted.
    /// - Returns: the count, for the request's usage row.
    @discardableResult
    func recordUsage(ofReply body: some Collection<UInt8>, model: String) -> ReplyMeter.Usage? {
        guard body.count <= Self.maxUsageReplyBytes, let members = JSONMembers(body)?.object("usage") else { return nil }
        let usage = ReplyMeter.Usage(promptTokens: members.int("prompt_tokens"), completionTokens: members.int("completion_tokens"))
        recordUsage(usage, model: model)
        return usage
    }

    /// The engine's own count of one reply's tokens.
    func recordUsage(_ usage: ReplyMeter.Usage, model: String) {
        recordTokens(model: model, kind: .prompt, count: usage.promptTokens ?? 0)
        recordTokens(model: model, kind: .completion, count: usage.completionTokens ?? 0)
    }

    /// The time from a streamed request's arrival (gateway or LLM API) to its first content, `modeld_time_to_first_token_seconds{model}`.
    func recordTimeToFirstToken(model: String, _ duration: Duration) {
        cached(\.firstTokens, model) {
            registry.makeDurationHistogram(descriptor: Self.firstTokenDescriptor, labels: [("model", model)], buckets: Self.firstTokenBuckets)
        }.record(duration)
    }

    // MARK: Backends (docs/gateway.md, Metrics)

    /// One attempt on an upstream: `modeld_upstream_requests_total{backend,code}`; `code` is the reply's status,
    /// or `error` when none came (refused, time-out, broken off).
    func recordUpstreamRequest(backend: String, code: String) {
        backendCounter(
            "modeld_upstream_requests", "Attempts on upstreams, by backend and status (error: no reply)", [("backend", backend), ("code", code)]
        ).increment()
    }

    /// A request moved on from a backend that failed before its first byte: `modeld_upstream_failovers_total{from,reason}`.
    func recordFailover(from backend: String, reason: String) {
        backendCounter(
            "modeld_upstream_failovers", "Requests moved on to the next backend, by the backend that failed and why",
            [("from", backend), ("reason", reason)]
        ).increment()
    }

    /// `modeld_backend_up{backend}`: 1 while an upstream gets traffic, 0 while it is disabled or cooled down.
    func setBackendUp(_ backend: String, up: Bool) {
        cached(\.backendUp, backend) {
            registry.makeGauge(
                descriptor: MetricNameDescriptor(
                    metricName: "modeld_backend_up", unitName: "", helpText: "Whether an upstream gets traffic (0: disabled or cooled down)"),
                labels: [("backend", backend)])
        }.set(Double(up ? 1 : 0))
    }

    /// Tokens and their cost for one reply of a backend: `modeld_backend_tokens_total{backend,kind}` and
    /// `modeld_backend_cost_total{backend}` (the upstream's prices per million tokens).
    func recordBackendUsage(backend: String, usage: ReplyMeter.Usage, costIn: Double = 0, costOut: Double = 0) {
        let prompt = usage.promptTokens ?? 0, completion = usage.completionTokens ?? 0
        for (kind, count) in [(TokenKind.prompt, prompt), (.completion, completion)] where count > 0 {
            backendCounter("modeld_backend_tokens", "Tokens in replies, by backend and kind", [("backend", backend), ("kind", kind.rawValue)])
                .increment(by: Int64(count))
        }
        let cost = (Double(prompt) * costIn + Double(completion) * costOut) / 1_000_000
        if cost > 0 {
            backendCounter(
                "modeld_backend_cost", "Cost of replies at the upstream's prices (cost_in, cost_out per million tokens), by backend",
                [("backend", backend)]
            ).increment(by: cost)
        }
    }

    private func backendCounter(_ name: String, _ help: String, _ labels: [(String, String)]) -> Prometheus.Counter {
        cached(\.backendCounters, [name] + labels.map(\.1)) {
            registry.makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "total", helpText: help), labels: labels)
        }
    }

    /// The series for a label set, registered on first use. The registry deduplicates, so two requests
    /// racing to register the same labels get the same series.
    private func cached<Key: Hashable, Metric: Sendable>(
        _ table: WritableKeyPath<Series, [Key: Metric]>, _ key: Key, register: () -> Metric
    ) -> Metric {
        if let metric = series.withLock({ $0[keyPath: table][key] }) { return metric }
        let metric = register()
        series.withLock { $0[keyPath: table][key] = metric }
        return metric
    }

    /// Sets `modeld_runs{state}` from the supervisor's runs (every state, zero included).
    func updateRuns(_ runs: [RunInfo]) {
        var counts: [RunState: Int] = [:]
        for run in runs { counts[run.state, default: 0] += 1 }
        for (state, gauge) in runGauges { gauge.set(Double(counts[state, default: 0])) }
    }

    /// Every series in the Prometheus text format (version 0.0.4).
    func exposition() -> [UInt8] {
        registry.emitToBuffer()
    }

    // Computed: `MetricNameDescriptor` is not Sendable, and these are read only when a label set first appears.
    private static var requestsDescriptor: MetricNameDescriptor {
        MetricNameDescriptor(
            metricName: "modeld_http_requests", unitName: "total", helpText: "HTTP requests answered, by route pattern, status code and model")
    }
    private static var streamingDescriptor: MetricNameDescriptor {
        MetricNameDescriptor(
            metricName: "modeld_streaming_requests", unitName: "total",
            helpText: "HTTP requests answered with a streamed reply (SSE, NDJSON), by route pattern, status code and model")
    }
    private static var durationDescriptor: MetricNameDescriptor {
        MetricNameDescriptor(
            metricName: "modeld_http_request_duration", unitName: "seconds",
            helpText: "Time from a request's arrival to the last byte of its response, by route pattern")
    }
    private static var tokensDescriptor: MetricNameDescriptor {
        MetricNameDescriptor(
            metricName: "modeld_tokens", unitName: "total",
            helpText: "Tokens in replies of the gateway and the LLM API, by model and kind (prompt or completion)")
    }
    private static var firstTokenDescriptor: MetricNameDescriptor {
        MetricNameDescriptor(
            metricName: "modeld_time_to_first_token", unitName: "seconds",
            helpText: "Time from a streamed request's arrival to its first content chunk, by model")
    }
}
