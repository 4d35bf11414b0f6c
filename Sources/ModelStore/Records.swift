import Foundation
import GRDB

/// The lifecycle of a pulled version. Only `ready` versions may be started or exported.
package enum VersionState: String, Sendable, Codable, CaseIterable, DatabaseValueConvertible {
    case pending, downloading, ready, failed, damaged
}

/// A hub repository modeld has pulled at least once.
package struct ModelRecord: Sendable, Hashable, Codable, FetchableRecord, MutablePersistableRecord {
    package static let databaseTableName = "models"
    package var id: Int64?
    package var source: String
    package var repo: String
    package var createdAt: Date

    package init(id: Int64? = nil, source: String, repo: String, createdAt: Date = Date()) {
        self.id = id
        self.source = source
        self.repo = repo
        self.createdAt = createdAt
    }

    enum CodingKeys: String, CodingKey {
        case id, source, repo
        case createdAt = "created_at"
    }

    package mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// One commit of a model, stored on disk.
package struct VersionRecord: Sendable, Hashable, Codable, FetchableRecord, MutablePersistableRecord {
    package static let databaseTableName = "versions"
    package var id: Int64?
    package var modelID: Int64
    package var requestedRevision: String
    package var commit: String
    package var state: VersionState
    /// The snapshot directory engines load.
    package var path: String?
    package var totalBytes: Int64
    package var error: String?
    package var createdAt: Date
    package var updatedAt: Date
    package var readyAt: Date?

    package init(
        id: Int64? = nil, modelID: Int64, requestedRevision: String, commit: String, state: VersionState,
        path: String? = nil, totalBytes: Int64 = 0, error: String? = nil, createdAt: Date = Date(),
        updatedAt: Date = Date(), readyAt: Date? = nil
    ) {
        self.id = id
        self.modelID = modelID
        self.requestedRevision = requestedRevision
        self.commit = commit
        self.state = state
        self.path = path
        self.totalBytes = totalBytes
        self.error = error
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.readyAt = readyAt
    }

    enum CodingKeys: String, CodingKey {
        case id, commit, state, path, error
        case modelID = "model_id"
        case requestedRevision = "requested_revision"
        case totalBytes = "total_bytes"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
        case readyAt = "ready_at"
    }

    package mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// A version together with the repository it belongs to.
package struct LocalVersion: Sendable, Hashable {
    package var model: ModelRecord
    package var version: VersionRecord

    package init(model: ModelRecord, version: VersionRecord) {
        self.model = model
        self.version = version
    }
}

extension Store {
    /// Every stored version with its repository, newest first.
    package func localVersions() async throws -> [LocalVersion] {
        try await read { db in
            let models = try ModelRecord.fetchAll(db)
            let byID = Dictionary(uniqueKeysWithValues: models.compactMap { model in model.id.map { ($0, model) } })
            let versions = try VersionRecord.order(Column("created_at").desc, Column("id").desc).fetchAll(db)
            return versions.compactMap { version in
                byID[version.modelID].map { LocalVersion(model: $0, version: version) }
            }
        }
    }

    /// Finds or creates the model row for a repository.
    package func model(source: String, repo: String) async throws -> ModelRecord {
        try await write { db in
            if let existing = try ModelRecord.filter(Column("source") == source && Column("repo") == repo).fetchOne(db) {
                return existing
            }
            var record = ModelRecord(source: source, repo: repo)
            try record.insert(db)
            return record
        }
    }
}
