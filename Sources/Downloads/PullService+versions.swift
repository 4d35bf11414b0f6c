import Catalog
import Foundation
import Hubs
import ModelStore

extension PullService {
    /// Finds a stored version; `commit` may be a full commit, a unique prefix, or the revision it was pulled as.
    package func findVersion(source: ModelSource, repo: String, commit: String) async throws -> LocalVersion {
        let versions = try await store.versions(source: source.rawValue, repo: repo)
        let matches = versions.filter { $0.version.commit == commit }
        if let exact = matches.first { return exact }
        let byPrefix = versions.filter { commit.count >= 7 && $0.version.commit.hasPrefix(commit) }
        if byPrefix.count == 1 { return byPrefix[0] }
        let byRevision = versions.filter { $0.version.requestedRevision == commit }
        if let newest = byRevision.first { return newest }
        throw PullError(.notFound, "no local version \(commit) of \(repo) (\(source.rawValue)); `modelctl list` shows what is stored")
    }

    /// Deletes a version: its snapshot, the refs pointing at it, and the blobs no other version uses (on a
    /// thread of its own: the store's write and the file removals may be slow).
    /// - Throws: ``PullError`` when it does not exist, or a pull, import or adoption of the repository is running.
    package func remove(source: ModelSource, repo: String, commit: String) async throws {
        let found = try await findVersion(source: source, repo: repo, commit: commit)
        try await onCancellableThread(CancellationFlag()) {
            try self.claiming(source: source, repo: repo, for: "a removal") {
                let unused = try self.store.writeBlocking { db in try Store.deleteVersion(db, id: found.version.id!) }
                try self.cache.removeVersion(source, repo: repo, commit: found.version.commit, unusedBlobs: unused)
            }
        }
    }

    /// Re-hashes every file of a version; marks it `damaged` when something is missing or changed (and
    /// `ready` again when a damaged version checks out).
    package func verify(source: ModelSource, repo: String, commit: String) async throws -> VerifyReport {
        let found = try await findVersion(source: source, repo: repo, commit: commit)
        let versionID = found.version.id!
        let files = try await store.files(versionID: versionID)
        let directory = cache.versionDirectory(source, repo: repo, commit: found.version.commit)
        let flag = CancellationFlag()
        let report = try await onCancellableThread(flag) { () -> VerifyReport in
            var damage: [VerifyReport.Damage] = []
            var bytes: Int64 = 0
            for file in files {
                if flag.isCancelled { throw PullError(.cancelled, "verification of \(repo) was cancelled") }
                let path = directory.appending(path: file.path).path
                guard FileManager.default.fileExists(atPath: path) else {
                    damage.append(.init(path: file.path, problem: "missing"))
                    continue
                }
                let kind = HashKind(rawValue: file.hashKind) ?? .sha256
                do {
                    let (digest, size) = try ContentHasher.digest(ofFileAt: path, kind: kind)
                    bytes += size
                    if size != file.size {
                        damage.append(.init(path: file.path, problem: "size \(size), expected \(file.size)"))
                    } else if digest != file.hash {
                        damage.append(.init(path: file.path, problem: "\(kind.rawValue) \(digest), expected \(file.hash)"))
                    }
                } catch {
                    damage.append(.init(path: file.path, problem: "unreadable: \(error)"))
                }
            }
            return VerifyReport(
                source: source, repo: repo, commit: found.version.commit, filesChecked: files.count, bytesChecked: bytes,
                damage: damage)
        }
        if !report.isIntact {
            let summary = report.damage.prefix(3).map(\.description).joined(separator: "; ")
            try await store.setVersionState(
                id: versionID, .damaged, error: "\(report.damage.count) damaged file(s): \(summary); pull it again to repair")
        } else if found.version.state == .damaged {
            try await store.setVersionState(id: versionID, .ready)
        }
        return report
    }
}
