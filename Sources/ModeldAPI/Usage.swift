import FoundationEssentials

/// `GET /api/v1/usage`: the usage of requests that reached a backend in `[from, to)`, summed per group.
package struct UsageReport: Codable, Sendable, Equatable {
    package var from: Date
    package var to: Date
    /// `key`, `model`, `backend` or `day`; absent: one total.
    package var groupBy: String?
    package var groups: [UsageGroup]

    package init(from: Date, to: Date, groupBy: String?, groups: [UsageGroup]) {
        self.from = from
        self.to = to
        self.groupBy = groupBy
        self.groups = groups
    }

    enum CodingKeys: String, CodingKey {
        case from, to, groups
        case groupBy = "group_by"
    }
}

/// One group's sums.
package struct UsageGroup: Codable, Sendable, Equatable {
    /// The key id, model, backend (`local:<run name>`, `upstream:<name>`) or UTC day (`yyyy-MM-dd`); `total` for one
    /// total, `none` for requests without a key.
    package var group: String
    /// The key's name, when grouped by key.
    package var name: String?
    package var requests: Int
    /// Requests answered with a status of 400 or more.
    package var errors: Int
    package var promptTokens: Int
    package var completionTokens: Int
    package var totalTokens: Int
    package var cost: Double
    package var meanLatencyMs: Double

    package init(
        group: String, name: String?, requests: Int, errors: Int, promptTokens: Int, completionTokens: Int, cost: Double,
        meanLatencyMs: Double
    ) {
        self.group = group
        self.name = name
        self.requests = requests
        self.errors = errors
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        totalTokens = promptTokens + completionTokens
        self.cost = cost
        self.meanLatencyMs = meanLatencyMs
    }

    enum CodingKeys: String, CodingKey {
        case group, name, requests, errors, cost
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case totalTokens = "total_tokens"
        case meanLatencyMs = "mean_latency_ms"
    }
}
