import FoundationEssentials

/// How the gateway talks to an upstream (docs/gateway.md).
package enum UpstreamKind: String, Codable, Sendable, CaseIterable {
    /// An OpenAI-compatible server; the URL is its base URL as OpenAI's clients take it (`https://api.openai.com/v1`).
    case openai
    /// Azure OpenAI: the resource's URL; `model` names a deployment, `api-version` goes in the query, the key in `api-key`.
    case azure
    /// Ollama: its server's URL; chat goes to its OpenAI-compatible `/v1` routes, discovery and probes to `/api/tags`.
    case ollama
    /// Another modeld: its URL; requests go to its `/v1` gateway.
    case modeld
}

/// How a request chooses among the backends that serve its model (docs/gateway.md, Routing).
package enum RoutingStrategy: String, Codable, Sendable, CaseIterable {
    /// Local runs (ready, then started on demand), then upstreams by priority.
    case localFirst = "local-first"
    /// Every backend by priority (lowest first); local runs have priority 0.
    case priority
    /// Smooth weighted round-robin by weight; local runs weigh 1.
    case weighted
    /// Each backend in turn.
    case roundRobin = "round-robin"
    /// The fewest requests in flight.
    case leastBusy = "least-busy"
    /// The lowest moving average (EWMA) of the time to first token; untried backends first.
    case latency
    /// The lowest price per token (cost in + cost out); local runs cost nothing.
    case cost
}

/// `POST /api/v1/upstreams`: a new upstream, or the new settings of one (same name).
package struct UpstreamRequest: Codable, Sendable {
    package var name: String
    package var kind: UpstreamKind?
    package var url: String
    /// The environment variable of the daemon that holds the provider's key.
    package var apiKeyEnv: String?
    /// A file, readable by the daemon, that holds the provider's key.
    package var apiKeyFile: String?
    /// Azure's `api-version`.
    package var apiVersion: String?
    /// The models it serves; with `discover`, those it lists are added.
    package var models: [String]?
    package var discover: Bool?
    package var priority: Int?
    package var weight: Int?
    /// Price per million prompt tokens.
    package var costIn: Double?
    /// Price per million completion tokens.
    package var costOut: Double?
    package var maxConcurrency: Int?
    /// Seconds to wait for the reply's first byte (the connection included).
    package var timeout: Double?

    package init(
        name: String, kind: UpstreamKind? = nil, url: String, apiKeyEnv: String? = nil, apiKeyFile: String? = nil, apiVersion: String? = nil,
        models: [String]? = nil, discover: Bool? = nil, priority: Int? = nil, weight: Int? = nil, costIn: Double? = nil,
        costOut: Double? = nil, maxConcurrency: Int? = nil, timeout: Double? = nil
    ) {
        self.name = name
        self.kind = kind
        self.url = url
        self.apiKeyEnv = apiKeyEnv
        self.apiKeyFile = apiKeyFile
        self.apiVersion = apiVersion
        self.models = models
        self.discover = discover
        self.priority = priority
        self.weight = weight
        self.costIn = costIn
        self.costOut = costOut
        self.maxConcurrency = maxConcurrency
        self.timeout = timeout
    }

    enum CodingKeys: String, CodingKey {
        case name, kind, url, models, discover, priority, weight, timeout
        case apiKeyEnv = "api_key_env"
        case apiKeyFile = "api_key_file"
        case apiVersion = "api_version"
        case costIn = "cost_in"
        case costOut = "cost_out"
        case maxConcurrency = "max_concurrency"
    }
}

/// An upstream as listed: where its key comes from, never the key.
package struct UpstreamInfo: Codable, Sendable, Equatable {
    package var name: String
    package var kind: UpstreamKind
    package var url: String
    package var apiKeyEnv: String?
    package var apiKeyFile: String?
    /// Whether the variable or file named holds a key now.
    package var apiKeySet: Bool
    package var apiVersion: String?
    /// The models given, then those discovered.
    package var models: [String]
    package var discover: Bool
    package var discoveredAt: Date?
    package var priority: Int
    package var weight: Int
    package var costIn: Double
    package var costOut: Double
    package var maxConcurrency: Int?
    package var timeout: Double
    package var enabled: Bool
    /// `up`, `cooling` (too many failures: no traffic until a probe succeeds) or `disabled`.
    package var state: String
    package var inFlight: Int
    /// The moving average of the time to first token, in milliseconds, once measured.
    package var latencyMs: Double?

    package init(
        name: String, kind: UpstreamKind, url: String, apiKeyEnv: String?, apiKeyFile: String?, apiKeySet: Bool, apiVersion: String?,
        models: [String], discover: Bool, discoveredAt: Date?, priority: Int, weight: Int, costIn: Double, costOut: Double,
        maxConcurrency: Int?, timeout: Double, enabled: Bool, state: String, inFlight: Int, latencyMs: Double?
    ) {
        self.name = name
        self.kind = kind
        self.url = url
        self.apiKeyEnv = apiKeyEnv
        self.apiKeyFile = apiKeyFile
        self.apiKeySet = apiKeySet
        self.apiVersion = apiVersion
        self.models = models
        self.discover = discover
        self.discoveredAt = discoveredAt
        self.priority = priority
        self.weight = weight
        self.costIn = costIn
        self.costOut = costOut
        self.maxConcurrency = maxConcurrency
        self.timeout = timeout
        self.enabled = enabled
        self.state = state
        self.inFlight = inFlight
        self.latencyMs = latencyMs
    }

    enum CodingKeys: String, CodingKey {
        case name, kind, url, models, discover, priority, weight, timeout, enabled, state
        case apiKeyEnv = "api_key_env"
        case apiKeyFile = "api_key_file"
        case apiKeySet = "api_key_set"
        case apiVersion = "api_version"
        case discoveredAt = "discovered_at"
        case costIn = "cost_in"
        case costOut = "cost_out"
        case maxConcurrency = "max_concurrency"
        case inFlight = "in_flight"
        case latencyMs = "latency_ms"
    }
}

/// `POST /api/v1/upstreams/{name}/test`: whether the upstream answers its model listing with its key.
package struct UpstreamTestResult: Codable, Sendable, Equatable {
    package var name: String
    package var ok: Bool
    /// The HTTP status, when one came.
    package var status: Int?
    package var latencyMs: Double
    /// The models it listed.
    package var models: [String]
    /// What went wrong, when not ok.
    package var error: String?

    package init(name: String, ok: Bool, status: Int?, latencyMs: Double, models: [String], error: String?) {
        self.name = name
        self.ok = ok
        self.status = status
        self.latencyMs = latencyMs
        self.models = models
        self.error = error
    }

    enum CodingKeys: String, CodingKey {
        case name, ok, status, models, error
        case latencyMs = "latency_ms"
    }
}

/// A model group: a public model name, the model names it routes to (an alias when they differ from it), and
/// the strategy that chooses among their backends. `POST /api/v1/model-groups` creates or replaces one.
package struct ModelGroupInfo: Codable, Sendable, Equatable {
    package var name: String
    /// The names whose backends serve it; empty for the name itself.
    package var targets: [String]
    /// Nil for the daemon's default (`routing_strategy`).
    package var strategy: RoutingStrategy?

    package init(name: String, targets: [String] = [], strategy: RoutingStrategy? = nil) {
        self.name = name
        self.targets = targets
        self.strategy = strategy
    }
}
