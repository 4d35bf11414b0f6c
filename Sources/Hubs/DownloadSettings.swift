import Transfer

/// How downloads talk to a hub.
package struct DownloadSettings: Sendable {
    /// The origin (`scheme://host:port`) allowed to receive `authHeaders`; every other origin gets none.
    package var authOrigin: String?
    /// Credentials (`Authorization`, `Cookie`), sent only to `authOrigin`.
    package var authHeaders: [(String, String)]
    package var policy: RetryPolicy
    package var stallTimeout: Duration
    /// Per-transfer cap in bytes/s (the pull's `--max-download-rate` divided over its parallel transfers).
    package var maxReceiveRate: Int64?
    package var httpVersion: HTTPVersionPreference
    /// Files of at least `rangeThreshold` bytes are fetched as this many ranges at once (1: never).
    package var rangeParts: Int
    package var rangeThreshold: Int64
    /// The pull's transfers at once, shared by its files; extra ranges only take spare ones.
    package var transfers = TransferBudget(limit: .max)

    package init(
        authOrigin: String?, authHeaders: [(String, String)], policy: RetryPolicy = .standard,
        stallTimeout: Duration = .seconds(30), maxReceiveRate: Int64? = nil, httpVersion: HTTPVersionPreference = .http2,
        rangeParts: Int = 1, rangeThreshold: Int64 = 256 << 20
    ) {
        self.rangeParts = max(1, rangeParts)
        self.rangeThreshold = rangeThreshold
        self.authOrigin = authOrigin
        self.authHeaders = authHeaders
        self.policy = policy
        self.stallTimeout = stallTimeout
        self.maxReceiveRate = maxReceiveRate
        self.httpVersion = httpVersion
    }

    /// The headers for a request to `url`: credentials only for the hub's own origin.
    package func headers(for url: String) -> [(String, String)] {
        guard let authOrigin, originOf(url) == authOrigin else { return [] }
        return authHeaders
    }
}
