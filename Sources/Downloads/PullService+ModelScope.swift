import Catalog
import Foundation
import Hubs
import ModelStore
import ModeldAPI
import Synchronization

extension PullService {
    /// Pulls a ModelScope repository into `<data>/modelscope` (docs/design/hubs.md, ModelScope; layout in ``ModelScopeCache``).
    func pullModelScope(_ job: PullJob) async throws {
        let request = job.request
        let repo = request.repo
        let flag = job.cancelFlag
        let hub = ModelScopeHub(settings: configuration.modelScope, requester: requester, listingLimit: configuration.modelScopeListingLimit)
        let cache = self.cache.modelScope
        job.setPhase(.resolving)
        try FileManager.default.createDirectory(at: configuration.dataDirectory.tmp, withIntermediateDirectories: true)

        let listing = try await onCancellableThread(flag) {
            try hub.checkRevision(repo: repo, revision: request.revision, cancel: flag)
            return try hub.listFiles(repo: repo, revision: request.revision, cancel: flag)
        }
        let ignored: Set<String> = [".gitignore", ".gitattributes"]
        let candidates = listing.filter { !ignored.contains($0.name) && !ignored.contains($0.path) }
        let chosenPaths = Set(request.selection.choose(candidates.map(\.path)))
        var files: [(path: HubPath, entry: MSFileEntry, sha256: String)] = []
        for entry in candidates where chosenPaths.contains(entry.path) {
            let path = try HubPath(entry.path, repo: repo)
            guard let sha = entry.sha256?.lowercased(), sha.count == 64, sha.allSatisfy(\.isHexDigit) else {
                throw PullError(.invalidResponse, "ModelScope sent no sha256 for \(repo)/\(entry.path)")
            }
            files.append((path, entry, sha))
        }
        let version = ModelScopeCache.versionName(of: files.map { ($0.path.value, $0.sha256, $0.entry.size) })
        let versionPath = cache.versionDirectory(repo: repo, version: version).path
        job.setPlan(files.map { ($0.path.value, $0.entry.size) })

        if let existing = try await store.version(source: ModelSource.modelscope.rawValue, repo: repo, commit: version),
            existing.version.state == .ready, let versionID = existing.version.id
        {
            let records = try await store.files(versionID: versionID)
            if !records.isEmpty, records.allSatisfy({ cache.hasBlob(repo: repo, sha256: $0.hash, size: $0.size) }) {
                job.finish(path: versionPath, commit: version, alreadyPresent: true)
                return
            }
        }

        var needed: Int64 = 0
        var seen = Set<String>()
        for file in files where seen.insert(file.sha256).inserted && !cache.hasBlob(repo: repo, sha256: file.sha256, size: file.entry.size) {
            needed += max(0, file.entry.size - RangePlan.bytesOnDisk(partial: modelScopePartialURL(repo: repo, sha256: file.sha256)))
        }
        try checkFreeSpace(needed: needed, repo: repo)

        let record = try await store.beginVersion(
            source: ModelSource.modelscope.rawValue, repo: repo, revision: request.revision, commit: version, path: versionPath,
            totalBytes: files.reduce(0) { $0 + $1.entry.size })
        let versionID = record.version.id!
        job.setPhase(.downloading, commit: version)

        var settings = hub.downloadSettings
        settings.rangeParts = configuration.parallelRanges
        settings.rangeThreshold = configuration.rangeThreshold
        settings.transfers = TransferBudget(limit: configuration.concurrency)
        settings.maxReceiveRate = configuration.perTransferRate(
            files: files.filter { !cache.hasBlob(repo: repo, sha256: $0.sha256, size: $0.entry.size) }.count)
        let fetcher = FileFetcher(settings: settings, pool: pool, logger: logger, pulledBytes: pulledBytes[.modelscope]!) { response, item in
            if response.status == 404 {
                return PullError(.entryNotFound, "file \(item.path) not found in \(repo)@\(request.revision) on ModelScope")
            }
            return hub.mapError(response, repo: repo)
        }
        do {
            try await forEachConcurrently(files, limit: configuration.concurrency) { file in
                let size = file.entry.size
                try await self.traced(file.path.value, size: size) {
                    guard !cache.hasBlob(repo: repo, sha256: file.sha256, size: size) else {
                        job.fileDone(file.path.value, how: "present")
                        return "present"
                    }
                    let partial = self.modelScopePartialURL(repo: repo, sha256: file.sha256)
                    try await self.withPartial(partial.path, cancel: flag) {
                        guard !cache.hasBlob(repo: repo, sha256: file.sha256, size: size) else { return }
                        let item = DownloadItem(
                            path: file.path.value, url: hub.downloadURL(repo: repo, revision: request.revision, path: file.path.value),
                            size: size, hash: file.sha256, hashKind: .sha256)
                        try await onCancellableThread(flag) {
                            try fetcher.fetch(item, into: partial, cancel: flag) { bytes in job.fileProgress(file.path.value, bytes: bytes) }
                            try cache.installBlob(repo: repo, sha256: file.sha256, from: partial)
                        }
                    }
                    job.fileDone(file.path.value, how: "verified")
                    return "verified"
                }
                try cache.link(repo: repo, version: version, path: file.path, sha256: file.sha256)
            }
            let records = files.map { file in
                FileRecord(
                    versionID: versionID, path: file.path.value, size: file.entry.size, hash: file.sha256,
                    hashKind: HashKind.sha256.rawValue, verified: true, sourceCommit: file.entry.revision)
            }
            _ = try await store.completeVersion(id: versionID, files: records)
        } catch {
            try? await store.setVersionState(id: versionID, .failed, error: (error as? PullError)?.message ?? "\(error)")
            throw error
        }
        job.finish(path: versionPath, commit: version, alreadyPresent: false)
    }

    /// `<data>/tmp/ms--<owner>--<name>--<sha256>.part`.
    func modelScopePartialURL(repo: String, sha256: String) -> URL {
        configuration.dataDirectory.tmp.appending(
            path: "ms--\(repo.replacingOccurrences(of: "/", with: "--"))--\(sha256).part", directoryHint: .notDirectory)
    }
}
