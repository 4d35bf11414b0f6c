/// The reply to `POST /api/v1/models/import`: the version the archive held, now ready.
package struct ImportResult: Codable, Sendable, Equatable {
    package var version: LocalVersionInfo
    package var files: Int
    package var bytes: Int64

    package init(version: LocalVersionInfo, files: Int, bytes: Int64) {
        self.version = version
        self.files = files
        self.bytes = bytes
    }
}

/// The body of `POST /api/v1/models/adopt`: models already on this host to register without copying.
package struct AdoptRequest: Codable, Sendable, Equatable {
    /// An absolute path on the daemon's host.
    package var path: String
    /// `hf-cache` (a Hugging Face hub cache) or `dir` (a plain model directory, which needs `name`).
    package var kind: String
    /// The repository id (`owner/name`) to register a plain directory as.
    package var name: String?
    /// The revision a plain directory is recorded as (default `local`).
    package var revision: String?

    package init(path: String, kind: String, name: String? = nil, revision: String? = nil) {
        self.path = path
        self.kind = kind
        self.name = name
        self.revision = revision
    }
}

/// The reply to `POST /api/v1/models/adopt`.
package struct AdoptResult: Codable, Sendable, Equatable {
    package struct Skipped: Codable, Sendable, Equatable {
        package var path: String
        package var reason: String

        package init(path: String, reason: String) {
            self.path = path
            self.reason = reason
        }
    }

    package var adopted: [LocalVersionInfo]
    package var skipped: [Skipped]
    /// Bytes registered as hard links to the existing files, and bytes that had to be copied (another file system).
    package var linkedBytes: Int64
    package var copiedBytes: Int64

    package init(adopted: [LocalVersionInfo], skipped: [Skipped], linkedBytes: Int64, copiedBytes: Int64) {
        self.adopted = adopted
        self.skipped = skipped
        self.linkedBytes = linkedBytes
        self.copiedBytes = copiedBytes
    }

    enum CodingKeys: String, CodingKey {
        case adopted, skipped
        case linkedBytes = "linked_bytes"
        case copiedBytes = "copied_bytes"
    }
}
