import CCurl
import FoundationEssentials
import Glibc

/// The HTTP version a download asks for.
package enum HTTPVersionPreference: Sendable {
    /// HTTP/1.1 only.
    case http1
    /// HTTP/2 when the server offers it over TLS (ALPN), else HTTP/1.1; libcurl's own default.
    case http2
}

/// One request of a download: a HEAD or a (ranged) GET whose body is streamed.
package struct DownloadRequest: Sendable {
    package var method: String
    package var url: String
    package var headers: [(String, String)]
    /// Give up when no byte moves for this long (stall detection, not a total time cap).
    package var stallTimeout: Duration
    /// Receive at most this many bytes per second (nil: unlimited).
    package var maxReceiveRate: Int64?
    package var httpVersion: HTTPVersionPreference

    package init(
        method: String = "GET", url: String, headers: [(String, String)] = [], stallTimeout: Duration = .seconds(30),
        maxReceiveRate: Int64? = nil, httpVersion: HTTPVersionPreference = .http2
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.stallTimeout = stallTimeout
        self.maxReceiveRate = maxReceiveRate
        self.httpVersion = httpVersion
    }
}

/// What a download callback decides after seeing the response head.
package enum DownloadDecision: Sendable {
    /// Hand the body to `onData`.
    case receive
    /// Read the body but drop it (a redirect or an error page already handled from its head).
    case discard
    /// Stop the transfer now.
    case abort
}

/// A libcurl easy handle for downloads, kept by one worker thread and reused request after request so
/// its connections are reused. Redirects are never followed here: the caller decides, per origin.
///
/// Proxies come from libcurl's usual environment variables (`http_proxy`, `https_proxy`, `HTTPS_PROXY`,
/// `all_proxy`, `no_proxy`). TLS certificates are verified against libcurl's default CA bundle, or against
/// `caBundle` when one is given (for the server and for an HTTPS proxy alike, as `curl --cacert` does).
package final class CurlDownload: @unchecked Sendable {
    private let easy: CurlEasy
    private let caBundle: String?

    /// - Parameter caBundle: a PEM file of CA certificates to verify servers with instead of the default bundle.
    package init(caBundle: String? = nil) throws {
        easy = try CurlEasy()
        self.caBundle = caBundle
    }

    /// Performs one request on the calling thread (never call it on Swift's cooperative pool).
    /// - Parameters:
    ///   - onHead: called once with the final head before the first body byte (or at the end for an empty body).
    ///   - onData: receives body chunks when `onHead` said ``DownloadDecision/receive``; returns false to stop.
    /// - Returns: the response head, and whether a callback stopped the transfer.
    /// - Throws: ``CurlError`` for transport failures (connection errors, stalls, a cut body).
    package func perform(
        _ request: DownloadRequest, onHead: (HTTPResponseHead) -> DownloadDecision,
        onData: (UnsafeRawBufferPointer) -> Bool
    ) throws -> (head: HTTPResponseHead, stopped: Bool) {
        easy.reset()
        return try withoutActuallyEscaping(onHead) { onHead in
            try withoutActuallyEscaping(onData) { onData in
                let context = DownloadContext(easy: easy, onHead: onHead, onData: onData)
                let unmanaged = Unmanaged.passRetained(context)
                defer { unmanaged.release() }
                let pointer = unmanaged.toOpaque()

                try easy.set(CURLOPT_URL, request.url)
                try easy.set(CURLOPT_NOSIGNAL, 1)
                try easy.set(CURLOPT_FOLLOWLOCATION, 0)
                try easy.set(CURLOPT_ACCEPT_ENCODING, "identity")
                try easy.set(CURLOPT_TCP_KEEPALIVE, 1)
                if let caBundle {
                    try easy.set(CURLOPT_CAINFO, caBundle)
                    try easy.set(CURLOPT_PROXY_CAINFO, caBundle)
                }
                // 128 KiB, about curl's own: each pooled handle keeps its buffer, and larger ones did not pull faster.
                // Under a rate cap, smaller: libcurl (7.88) lets what is already in the socket buffers through in one
                // burst, buffer after buffer, whatever the cap (`curl --limit-rate 1M` reads 4 MiB from a loopback
                // server in 0.1 s). With a buffer of 1/200 of the cap a 4 MiB reply at 1 MiB/s takes 3.6 s.
                var bufferSize = 128 * 1024
                if let rate = request.maxReceiveRate, rate > 0 {
                    bufferSize = Int(min(Int64(bufferSize), max(1024, rate / 200)))
                }
                try easy.set(CURLOPT_BUFFERSIZE, bufferSize)
                let stallSeconds = max(1, Int(request.stallTimeout.components.seconds))
                try easy.set(CURLOPT_LOW_SPEED_LIMIT, 1)
                try easy.set(CURLOPT_LOW_SPEED_TIME, stallSeconds)
                try easy.set(CURLOPT_CONNECTTIMEOUT, min(stallSeconds, 30))
                switch request.httpVersion {
                case .http1: try easy.set(CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1))
                case .http2: try easy.set(CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS))
                }
                if let rate = request.maxReceiveRate, rate > 0 {
                    try easy.set(CURLOPT_MAX_RECV_SPEED_LARGE, offset: rate)
                }
                try easy.setHeaders(request.headers.map { "\($0.0): \($0.1)" } + ["Expect:"])
                try easy.setWriteFunction(downloadWrite, userData: pointer)
                try easy.setHeaderFunction(downloadHeader, userData: pointer)
                if request.method == "HEAD" {
                    try easy.set(CURLOPT_NOBODY, 1)
                } else {
                    try easy.set(CURLOPT_HTTPGET, 1)
                }
                var stopped = false
                do {
                    try easy.perform()
                } catch let error as CurlError where error.isAborted && context.stopped {
                    stopped = true
                }
                let head = HTTPResponseHead(status: easy.responseCode(), headers: context.headers)
                if !context.headDelivered && !stopped {
                    _ = onHead(head)
                }
                return (head, stopped)
            }
        }
    }
}

private final class DownloadContext {
    let easy: CurlEasy
    let onHead: (HTTPResponseHead) -> DownloadDecision
    let onData: (UnsafeRawBufferPointer) -> Bool
    var headers: [String: String] = [:]
    var headDelivered = false
    var decision = DownloadDecision.receive
    var stopped = false

    init(easy: CurlEasy, onHead: @escaping (HTTPResponseHead) -> DownloadDecision, onData: @escaping (UnsafeRawBufferPointer) -> Bool) {
        self.easy = easy
        self.onHead = onHead
        self.onData = onData
    }
}

private func downloadWrite(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ user: UnsafeMutableRawPointer?) -> Int {
    guard let user else { return 0 }
    let context = Unmanaged<DownloadContext>.fromOpaque(user).takeUnretainedValue()
    let length = size * count
    if !context.headDelivered {
        context.headDelivered = true
        context.decision = context.onHead(HTTPResponseHead(status: context.easy.responseCode(), headers: context.headers))
    }
    switch context.decision {
    case .discard:
        return length
    case .abort:
        context.stopped = true
        return 0
    case .receive:
        if !context.onData(UnsafeRawBufferPointer(start: data, count: length)) {
            context.stopped = true
            return 0
        }
        return length
    }
}

private func downloadHeader(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ user: UnsafeMutableRawPointer?) -> Int {
    guard let user, let data else { return 0 }
    let context = Unmanaged<DownloadContext>.fromOpaque(user).takeUnretainedValue()
    let length = size * count
    collectHeaderLine(data, count: length, into: &context.headers)
    return length
}
