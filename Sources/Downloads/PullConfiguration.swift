import Foundation
import Hubs
import ModelStore
import Transfer

/// How the pull service downloads: where to, from which hubs, how fast and how patiently.
package struct PullConfiguration: Sendable {
    package var dataDirectory: DataDirectory
    package var huggingFace: HuggingFaceSettings
    package var modelScope: ModelScopeSettings
    /// Files downloaded at once.
    package var concurrency: Int
    /// `--max-download-rate` in bytes/s for the whole pull (nil: unlimited), shared evenly by its transfers.
    package var maxDownloadRate: Int64?
    package var retry: RetryPolicy
    /// A transfer with no byte for this long is retried (stall detection instead of a total time cap).
    package var stallTimeout: Duration
    package var httpVersion: HTTPVersionPreference
    /// A PEM file of CA certificates that verifies the hubs' TLS certificates instead of libcurl's default bundle
    /// (`ca_bundle`, else `CURL_CA_BUNDLE`, `SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`); nil: the default bundle.
    package var caBundle: String?
    /// How often progress events go out while bytes move.
    package var progressInterval: Duration
    /// Free bytes on the file system holding a directory (tests swap it to simulate a full disk).
    package var freeSpace: @Sendable (URL) -> Int64?
    /// Files of at least `rangeThreshold` bytes download as `parallelRanges` ranges at once.
    package var parallelRanges = 4
    package var rangeThreshold: Int64 = 256 << 20
    /// ModelScope's silent listing limit (3000); tests lower it.
    package var modelScopeListingLimit = 3000

    package init(
        dataDirectory: DataDirectory, huggingFace: HuggingFaceSettings = HuggingFaceSettings(),
        modelScope: ModelScopeSettings = ModelScopeSettings(), concurrency: Int = 4, maxDownloadRate: Int64? = nil,
        retry: RetryPolicy = .standard, stallTimeout: Duration = .seconds(30), httpVersion: HTTPVersionPreference = .http2,
        caBundle: String? = nil, progressInterval: Duration = .milliseconds(250), freeSpace: @escaping @Sendable (URL) -> Int64? = availableBytes
    ) {
        self.dataDirectory = dataDirectory
        self.huggingFace = huggingFace
        self.modelScope = modelScope
        self.concurrency = max(1, concurrency)
        self.maxDownloadRate = maxDownloadRate
        self.retry = retry
        self.stallTimeout = stallTimeout
        self.httpVersion = httpVersion
        self.caBundle = caBundle
        self.progressInterval = progressInterval
        self.freeSpace = freeSpace
    }

    /// Hub settings from the environment (`HF_ENDPOINT`, `HF_TOKEN`, `MODELSCOPE_ENDPOINT`, ...).
    /// - Parameter caBundle: the CA bundle the daemon's configuration chose (``DaemonConfiguration/caBundle``).
    package static func fromEnvironment(
        dataDirectory: DataDirectory, environment: [String: String], maxDownloadRate: Int64? = nil, caBundle: String? = nil
    ) -> PullConfiguration {
        PullConfiguration(
            dataDirectory: dataDirectory, huggingFace: .fromEnvironment(environment), modelScope: .fromEnvironment(environment),
            maxDownloadRate: maxDownloadRate, caBundle: caBundle)
    }

    /// The per-transfer rate cap when `files` files are to be downloaded: the pull's cap split evenly
    /// over the transfers that run at once.
    func perTransferRate(files: Int) -> Int64? {
        let transfers = Int64(max(1, min(concurrency, files)))
        return maxDownloadRate.map { max(1, $0 / transfers) }
    }
}

/// Free bytes for an unprivileged user on the file system holding `url` (statvfs), nil when unknown.
package func availableBytes(_ url: URL) -> Int64? {
    fileSystemSpace(url)?.available
}

/// Free bytes for an unprivileged user, and the size, of the file system holding `url` (statvfs, on the nearest
/// existing ancestor); nil when unknown.
package func fileSystemSpace(_ url: URL) -> (available: Int64, total: Int64)? {
    var info = statvfs()
    var path = url.path
    while statvfs(path, &info) != 0 {
        guard path != "/", !path.isEmpty else { return nil }
        path = (path as NSString).deletingLastPathComponent
    }
    return (Int64(info.f_bavail) * Int64(info.f_frsize), Int64(info.f_blocks) * Int64(info.f_frsize))
}

/// Bytes as people read them ("1.5 GB").
func formatBytes(_ bytes: Int64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1000 && unit < units.count - 1 {
        value /= 1000
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f", value) + " " + units[unit]
}
