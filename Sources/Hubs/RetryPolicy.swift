import Foundation

/// When and how long to wait before trying a request again.
///
/// Retried: connection errors, stalls and cut bodies, 408, 429 (after `Retry-After` or `RateLimit`'s `t`),
/// and 5xx. The default waits like huggingface_hub: 1, 2, 4, 8, 8 s (docs/design/hubs.md, Errors and rate limits).
package struct RetryPolicy: Sendable {
    /// Tries of one request before giving up on transient failures (the first try included).
    package var maxAttempts: Int
    /// The wait after the n-th failed try; the last value repeats.
    package var delays: [Duration]
    /// The longest `Retry-After` honoured; a longer one is cut to this.
    package var maxRetryAfter: Duration
    /// Downloads of one file whose hash came out wrong before the pull fails.
    package var checksumAttempts: Int

    package init(
        maxAttempts: Int = 6, delays: [Duration] = [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(8)],
        maxRetryAfter: Duration = .seconds(120), checksumAttempts: Int = 3
    ) {
        self.maxAttempts = max(1, maxAttempts)
        self.delays = delays.isEmpty ? [.seconds(1)] : delays
        self.maxRetryAfter = maxRetryAfter
        self.checksumAttempts = max(1, checksumAttempts)
    }

    package static let standard = RetryPolicy()

    /// The wait after `failures` consecutive failures (1 for the first).
    package func delay(afterFailures failures: Int) -> Duration {
        delays[min(max(failures - 1, 0), delays.count - 1)]
    }

    /// The wait a 429 (or 503) asks for: `Retry-After: <seconds>`, or `RateLimit: ...;t=<seconds>` plus one.
    package func serverDelay(headers: [String: String]) -> Duration? {
        if let value = headers["retry-after"], let seconds = Double(value.trimmingCharacters(in: .whitespaces)), seconds >= 0 {
            return min(.milliseconds(Int64(seconds * 1000)), maxRetryAfter)
        }
        if let value = headers["ratelimit"] {
            for part in value.split(separator: ";") {
                let item = part.trimmingCharacters(in: .whitespaces)
                if item.hasPrefix("t="), let seconds = Int(item.dropFirst(2)) {
                    return min(.seconds(seconds + 1), maxRetryAfter)
                }
            }
        }
        return nil
    }

    /// Whether an HTTP status is worth another try.
    package static func isRetryable(status: Int) -> Bool {
        status == 408 || status == 429 || (500...599).contains(status)
    }
}
