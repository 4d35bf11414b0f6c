import Hubs

/// One file to download: where from, how big, and the hash it must have.
package struct DownloadItem: Sendable {
    /// The file's path in the repository (for messages and progress).
    package var path: String
    package var url: String
    package var size: Int64
    package var hash: String
    package var hashKind: HashKind

    package init(path: String, url: String, size: Int64, hash: String, hashKind: HashKind) {
        self.path = path
        self.url = url
        self.size = size
        self.hash = hash
        self.hashKind = hashKind
    }
}
