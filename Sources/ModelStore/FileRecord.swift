import GRDB

/// One file of a version: its path in the repository, size and content hash.
package struct FileRecord: Sendable, Hashable, Codable, FetchableRecord, MutablePersistableRecord {
    package static let databaseTableName = "files"
    package var id: Int64?
    package var versionID: Int64
    package var path: String
    package var size: Int64
    package var hash: String
    /// `sha256` or `git-sha1`.
    package var hashKind: String
    package var verified: Bool
    /// The commit the file came from, when the hub says so per file (ModelScope's `Revision`).
    package var sourceCommit: String?

    package init(
        id: Int64? = nil, versionID: Int64, path: String, size: Int64, hash: String, hashKind: String, verified: Bool,
        sourceCommit: String? = nil
    ) {
        self.id = id
        self.versionID = versionID
        self.path = path
        self.size = size
        self.hash = hash
        self.hashKind = hashKind
        self.verified = verified
        self.sourceCommit = sourceCommit
    }

    enum CodingKeys: String, CodingKey {
        case id, path, size, hash, verified
        case versionID = "version_id"
        case hashKind = "hash_kind"
        case sourceCommit = "source_commit"
    }

    package mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}
