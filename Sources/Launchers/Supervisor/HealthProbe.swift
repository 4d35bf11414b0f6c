import Transfer

/// An HTTP GET against an engine's loopback port, expecting 200 (docs/design/supervision.md, Health probes).
/// Runs libcurl on a dedicated thread.
package struct HealthProbe: Sendable {
    package var url: String
    package var timeout: Duration
    private let transfer: HTTPTransfer

    package init(port: Int, path: String, timeout: Duration) throws {
        self.url = "http://127.0.0.1:\(port)\(path)"
        self.timeout = timeout
        self.transfer = try HTTPTransfer()
    }

    /// Whether the engine answered 200 in time.
    package func check() async -> Bool {
        let request = HTTPRequest(url: url, stallTimeout: timeout)
        let transfer = transfer
        guard let response = try? await onThread({ try transfer.perform(request) }) else { return false }
        return response.status == 200
    }
}
