import Synchronization
import Transfer

/// Idle libcurl handles kept between requests so their connections are reused (one handle per busy thread).
package final class CurlPool: Sendable {
    private let idle = Mutex<[CurlDownload]>([])

    package init() {}

    /// Lends a handle to `body` on the calling thread and takes it back afterwards.
    func withHandle<T>(_ body: (CurlDownload) throws -> T) throws -> T {
        let handle = try idle.withLock { $0.popLast() } ?? CurlDownload()
        defer { idle.withLock { $0.append(handle) } }
        return try body(handle)
    }
}
