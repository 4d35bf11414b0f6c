import Foundation
import Logging
import Transfer

/// Sends small hub requests (API calls, HEADs) with retries, on the calling worker thread.
package struct HubRequester: Sendable {
    package let pool: HandlePool<CurlDownload>
    package let policy: RetryPolicy
    package let stallTimeout: Duration
    package let httpVersion: HTTPVersionPreference
    /// Where retries are reported.
    package let logger: Logger

    package init(
        pool: HandlePool<CurlDownload>, policy: RetryPolicy, stallTimeout: Duration, httpVersion: HTTPVersionPreference, logger: Logger
    ) {
        self.pool = pool
        self.policy = policy
        self.stallTimeout = stallTimeout
        self.httpVersion = httpVersion
        self.logger = logger
    }

    /// Sends `request`, retrying connection errors, 408, 429 and 5xx.
    /// - Parameter what: what the request is for, used in error messages ("resolving acme/tiny@main").
    /// - Returns: the final reply; statuses other than the retried ones are for the caller to judge.
    /// - Throws: ``PullError`` when retries run out or the pull was cancelled.
    package func send(_ request: DownloadRequest, cancel: CancellationFlag, what: String) throws -> HubResponse {
        var request = request
        request.stallTimeout = stallTimeout
        request.httpVersion = httpVersion
        var failures = 0
        while true {
            if cancel.isCancelled { throw PullError(.cancelled, "cancelled while \(what)") }
            var body = Data()
            let result: (head: HTTPResponseHead, stopped: Bool)
            do {
                result = try pool.withHandle { curl in
                    try curl.perform(request, onHead: { _ in .receive }) { chunk in
                        if cancel.isCancelled { return false }
                        if body.count < 64 << 20 { body.append(contentsOf: chunk) }
                        return true
                    }
                }
            } catch let error as CurlError {
                failures += 1
                guard error.isTransient, failures < policy.maxAttempts else {
                    throw PullError.network(error, while: "\(what) (\(redacted(request.url)))", tries: failures)
                }
                let wait = policy.delay(afterFailures: failures)
                logger.warning(
                    "retrying a hub request",
                    metadata: ["while": "\(what)", "try": "\(failures)", "error": "\(error.message)", "in": "\(wait)"])
                guard cancel.sleep(for: wait) else {
                    throw PullError(.cancelled, "cancelled while \(what)")
                }
                continue
            } catch {
                throw PullError(.network, "cannot send a request while \(what): \(error)")
            }
            if result.stopped { throw PullError(.cancelled, "cancelled while \(what)") }
            let status = result.head.status
            if RetryPolicy.isRetryable(status: status) {
                failures += 1
                if failures >= policy.maxAttempts {
                    if status == 429 {
                        throw PullError(
                            .rateLimited,
                            "rate limited by \(hostOf(request.url)) while \(what) (HTTP 429, \(failures) tries); wait a few minutes and pull again, or set a token"
                        )
                    }
                    throw PullError(.server, "\(hostOf(request.url)) answered HTTP \(status) while \(what), \(failures) tries; try again later")
                }
                let wait = policy.serverDelay(headers: result.head.headers) ?? policy.delay(afterFailures: failures)
                guard cancel.sleep(for: wait) else { throw PullError(.cancelled, "cancelled while \(what)") }
                continue
            }
            return HubResponse(head: result.head, body: body)
        }
    }
}
