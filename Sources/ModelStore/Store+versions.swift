import Foundation
import GRDB

extension Store {
    /// The version of a repository at a commit, if recorded.
    package func version(source: String, repo: String, commit: String) async throws -> LocalVersion? {
        try await read { db in
            guard let model = try ModelRecord.filter(Column("source") == source && Column("repo") == repo).fetchOne(db),
                let modelID = model.id,
                let version = try VersionRecord.filter(Column("model_id") == modelID && Column("commit") == commit).fetchOne(db)
            else { return nil }
            return LocalVersion(model: model, version: version)
        }
    }

    /// Every version of a repository, newest first.
    package func versions(source: String, repo: String) async throws -> [LocalVersion] {
        try await localVersions().filter { $0.model.source == source && $0.model.repo == repo }
    }

    /// Records that a version is being downloaded (creating the model and version rows when new).
    package func beginVersion(
        source: String, repo: String, revision: String, commit: String, path: String, totalBytes: Int64
    ) async throws -> LocalVersion {
        try await write { db in
            try Self.beginVersion(db, source: source, repo: repo, revision: revision, commit: commit, path: path, totalBytes: totalBytes)
        }
    }

    /// ``beginVersion(source:repo:revision:commit:path:totalBytes:)`` inside a write.
    package static func beginVersion(
        _ db: Database, source: String, repo: String, revision: String, commit: String, path: String, totalBytes: Int64
    ) throws -> LocalVersion {
        var model: ModelRecord
        if let existing = try ModelRecord.filter(Column("source") == source && Column("repo") == repo).fetchOne(db) {
            model = existing
        } else {
            model = ModelRecord(source: source, repo: repo)
            try model.insert(db)
        }
        let modelID = model.id!
        var version: VersionRecord
        if let existing = try VersionRecord.filter(Column("model_id") == modelID && Column("commit") == commit).fetchOne(db) {
            version = existing
            version.state = .downloading
            version.requestedRevision = revision
            version.path = path
            version.totalBytes = totalBytes
            version.error = nil
            version.updatedAt = Date()
            version.readyAt = nil
            try version.update(db)
        } else {
            version = VersionRecord(
                modelID: modelID, requestedRevision: revision, commit: commit, state: .downloading, path: path,
                totalBytes: totalBytes)
            try version.insert(db)
        }
        return LocalVersion(model: model, version: version)
    }

    /// Records every verified file and marks the version `ready`, in one transaction.
    package func completeVersion(id: Int64, files: [FileRecord]) async throws -> VersionRecord {
        try await write { db in try Self.completeVersion(db, id: id, files: files) }
    }

    /// ``completeVersion(id:files:)`` inside a write.
    package static func completeVersion(_ db: Database, id: Int64, files: [FileRecord]) throws -> VersionRecord {
        guard var version = try VersionRecord.fetchOne(db, key: id) else {
            throw StoreError(code: .notFound, message: "version \(id) vanished while it was being pulled")
        }
        try FileRecord.filter(Column("version_id") == id).deleteAll(db)
        for var file in files {
            file.id = nil
            file.versionID = id
            try file.insert(db)
        }
        version.state = .ready
        version.error = nil
        version.totalBytes = files.reduce(0) { $0 + $1.size }
        version.updatedAt = Date()
        version.readyAt = Date()
        try version.update(db)
        return version
    }

    /// Sets a version's state (and error text).
    package func setVersionState(id: Int64, _ state: VersionState, error: String? = nil) async throws {
        try await write { db in
            guard var version = try VersionRecord.fetchOne(db, key: id) else { return }
            version.state = state
            version.error = error
            version.updatedAt = Date()
            if state != .ready { version.readyAt = state == .damaged ? version.readyAt : nil }
            try version.update(db)
        }
    }

    /// Marks the versions left `pending` or `downloading` by a daemon that stopped mid-pull (killed, or the
    /// machine lost power) as `failed`, so that no version claims a pull that is not running. Called at start-up,
    /// before any pull can begin; pulling the version again resumes from the partial files.
    /// - Returns: how many versions were marked.
    @discardableResult
    package func markInterruptedPulls() async throws -> Int {
        try await write { db in
            let stale = try VersionRecord.filter([VersionState.pending, VersionState.downloading].contains(Column("state"))).fetchAll(db)
            for var version in stale {
                version.state = .failed
                version.error = "interrupted: modeld stopped during the pull; pull it again to resume"
                version.updatedAt = Date()
                try version.update(db)
            }
            return stale.count
        }
    }

    /// The files of a version, by path.
    package func files(versionID: Int64) async throws -> [FileRecord] {
        try await read { db in try FileRecord.filter(Column("version_id") == versionID).order(Column("path")).fetchAll(db) }
    }

    /// Deletes a version (its files go with it) and the model row when it was the last version.
    /// - Returns: the hashes the version used that no other version of the same model uses.
    package func deleteVersion(id: Int64) async throws -> Set<String> {
        try await write { db in try Self.deleteVersion(db, id: id) }
    }

    /// ``deleteVersion(id:)`` inside a write.
    package static func deleteVersion(_ db: Database, id: Int64) throws -> Set<String> {
        guard let version = try VersionRecord.fetchOne(db, key: id) else { return [] }
        let mine = Set(try String.fetchAll(db, sql: "SELECT hash FROM files WHERE version_id = ?", arguments: [id]))
        let others = Set(
            try String.fetchAll(
                db,
                sql: """
                    SELECT files.hash FROM files JOIN versions ON files.version_id = versions.id
                    WHERE versions.model_id = ? AND versions.id != ?
                    """,
                arguments: [version.modelID, id]))
        _ = try VersionRecord.deleteOne(db, key: id)
        let remaining = try VersionRecord.filter(Column("model_id") == version.modelID).fetchCount(db)
        if remaining == 0 { _ = try ModelRecord.deleteOne(db, key: version.modelID) }
        return mine.subtracting(others)
    }

    /// Hashes that some version of the model uses (except `excluding`), to keep their blobs.
    package func hashesInUse(modelID: Int64, excluding versionID: Int64? = nil) async throws -> Set<String> {
        try await read { db in
            Set(
                try String.fetchAll(
                    db,
                    sql: """
                        SELECT files.hash FROM files JOIN versions ON files.version_id = versions.id
                        WHERE versions.model_id = ? AND versions.id != ?
                        """,
                    arguments: [modelID, versionID ?? -1]))
        }
    }
}
