import Catalog
import Foundation
import Hubs
import ModelStore
import ModeldAPI
import Synchronization

extension PullService {
    /// Pulls a Hugging Face repository into the hub cache (docs/design/hubs.md, Hugging Face).
    func pullHuggingFace(_ job: PullJob) async throws {
        let request = job.request
        let repo = request.repo
        let flag = job.cancelFlag
        let hub = HuggingFaceHub(settings: configuration.huggingFace, requester: requester)
        let cache = self.cache.huggingFace
        job.setPhase(.resolving)
        try FileManager.default.createDirectory(at: configuration.dataDirectory.tmp, withIntermediateDirectories: true)

        let (commit, tree) = try await onCancellableThread(flag) {
            let commit = try hub.resolveCommit(repo: repo, revision: request.revision, cancel: flag)
            let tree = try hub.listTree(repo: repo, commit: commit, cancel: flag)
            return (commit, tree)
        }
        let chosen = request.selection.choose(tree.map(\.path))
        let paths = try chosen.map { try HubPath($0, repo: repo) }
        let snapshotPath = cache.snapshot(repo: repo, commit: commit).path
        let writesRef = !HuggingFaceHub.isCommit(request.revision)

        // The same commit again: nothing to do when every blob is still there.
        if let existing = try await store.version(source: ModelSource.huggingface.rawValue, repo: repo, commit: commit),
            existing.version.state == .ready, let versionID = existing.version.id
        {
            let files = try await store.files(versionID: versionID)
            let recorded = Set(files.map(\.path))
            // Intact only if it holds what this pull chooses (an earlier pull may have chosen other files).
            let intact =
                !files.isEmpty && paths.allSatisfy { recorded.contains($0.value) }
                && files.allSatisfy { file in
                    cache.hasBlob(repo: repo, etag: file.hash, size: file.size)
                        && FileManager.default.fileExists(atPath: snapshotPath + "/" + file.path)
                }
            if intact {
                if writesRef { try cache.writeRef(repo: repo, revision: request.revision, commit: commit) }
                job.setPlan(files.map { ($0.path, $0.size) })
                job.finish(path: snapshotPath, commit: commit, alreadyPresent: true)
                return
            }
        }

        // A version that verify found damaged: drop the blobs whose content changed, so they are fetched again.
        if let existing = try await store.version(source: ModelSource.huggingface.rawValue, repo: repo, commit: commit),
            existing.version.state == .damaged, let versionID = existing.version.id
        {
            let records = try await store.files(versionID: versionID)
            try await onCancellableThread(flag) {
                for record in records {
                    let blob = cache.blob(repo: repo, etag: record.hash).path
                    let kind = HashKind(rawValue: record.hashKind) ?? .sha256
                    if let (digest, size) = try? ContentHasher.digest(ofFileAt: blob, kind: kind), digest == record.hash, size == record.size {
                        continue
                    }
                    unlink(blob)
                }
            }
        }

        job.setPhase(.resolving, commit: commit)
        let metadata = Locked<[HubPath: HFFileMetadata]>([:])
        try await forEachConcurrently(paths, limit: configuration.concurrency) { path in
            let meta = try await onCancellableThread(flag) {
                try hub.fileMetadata(repo: repo, commit: commit, path: path, cancel: flag)
            }
            metadata.withLock { $0[path] = meta }
        }
        let files = paths.map { path in (path, metadata.withLock { $0[path]! }) }
        for (path, meta) in files where !(meta.etag.count == 64 || meta.etag.count == 40) || !meta.etag.allSatisfy(\.isHexDigit) {
            throw PullError(.invalidResponse, "\(hub.endpoint) sent an unusable etag for \(repo)/\(path)")
        }
        job.setPlan(files.map { ($0.0.value, $0.1.size) })

        // Disk space: what is neither a blob already nor a partial download yet.
        var needed: Int64 = 0
        var seen = Set<String>()
        for (_, meta) in files where seen.insert(meta.etag).inserted && !cache.hasBlob(repo: repo, etag: meta.etag, size: meta.size) {
            needed += max(0, meta.size - RangePlan.bytesOnDisk(partial: partialURL(repo: repo, etag: meta.etag)))
        }
        try checkFreeSpace(needed: needed, repo: repo)

        let version = try await store.beginVersion(
            source: ModelSource.huggingface.rawValue, repo: repo, revision: request.revision, commit: commit,
            path: snapshotPath, totalBytes: files.reduce(0) { $0 + $1.1.size })
        let versionID = version.version.id!
        job.setPhase(.downloading, commit: commit)

        var settings = hub.downloadSettings
        settings.rangeParts = configuration.parallelRanges
        settings.rangeThreshold = configuration.rangeThreshold
        settings.transfers = TransferBudget(limit: configuration.concurrency)
        settings.maxReceiveRate = configuration.perTransferRate(
            files: files.filter { !cache.hasBlob(repo: repo, etag: $0.1.etag, size: $0.1.size) }.count)
        let fetcher = FileFetcher(settings: settings, pool: pool, logger: logger, pulledBytes: pulledBytes[.huggingface]!) { response, item in
            hub.mapError(response, repo: repo, revision: commit, file: item.path)
        }
        do {
            try await forEachConcurrently(files, limit: configuration.concurrency) { (path, meta) in
                try await self.traced(path.value, size: meta.size) {
                    guard !cache.hasBlob(repo: repo, etag: meta.etag, size: meta.size) else {
                        job.fileDone(path.value, how: "present")
                        return "present"
                    }
                    let partial = self.partialURL(repo: repo, etag: meta.etag)
                    try await self.withPartial(partial.path, cancel: flag) {
                        guard !cache.hasBlob(repo: repo, etag: meta.etag, size: meta.size) else { return }
                        let item = DownloadItem(
                            path: path.value, url: meta.downloadURL, size: meta.size, hash: meta.etag, hashKind: meta.hashKind)
                        try await onCancellableThread(flag) {
                            try fetcher.fetch(item, into: partial, cancel: flag) { bytes in job.fileProgress(path.value, bytes: bytes) }
                            try cache.installBlob(repo: repo, etag: meta.etag, from: partial)
                        }
                    }
                    job.fileDone(path.value, how: "verified")
                    return "verified"
                }
                try cache.link(repo: repo, commit: commit, path: path, etag: meta.etag)
            }
            if writesRef { try cache.writeRef(repo: repo, revision: request.revision, commit: commit) }
            let records = files.map { (path, meta) in
                FileRecord(
                    versionID: versionID, path: path.value, size: meta.size, hash: meta.etag, hashKind: meta.hashKind.rawValue,
                    verified: true)
            }
            _ = try await store.completeVersion(id: versionID, files: records)
        } catch {
            let message = (error as? PullError)?.message ?? "\(error)"
            try? await store.setVersionState(id: versionID, .failed, error: message)
            throw error
        }
        job.finish(path: snapshotPath, commit: commit, alreadyPresent: false)
    }

    /// The file paths of a Hugging Face repository at `revision` (its default branch when nil), without pulling:
    /// to choose files before a pull (a quantization's GGUF file).
    /// - Throws: ``PullError`` as a pull would (an unknown repository, a revision that does not resolve).
    package func listHuggingFaceFiles(repo: String, revision: String? = nil) async throws -> [String] {
        let request = PullRequest(repo: repo, revision: revision)
        try request.validate()
        let hub = HuggingFaceHub(settings: configuration.huggingFace, requester: requester)
        let flag = CancellationFlag()
        return try await onCancellableThread(flag) {
            let commit = try hub.resolveCommit(repo: repo, revision: request.revision, cancel: flag)
            return try hub.listTree(repo: repo, commit: commit, cancel: flag).map(\.path)
        }
    }

    /// The partial file of a blob: `<data>/tmp/hf--<owner>--<name>--<etag>.part`, found again after a restart.
    func partialURL(repo: String, etag: String) -> URL {
        configuration.dataDirectory.tmp.appending(
            path: "hf--\(repo.replacingOccurrences(of: "/", with: "--"))--\(etag).part", directoryHint: .notDirectory)
    }
}
