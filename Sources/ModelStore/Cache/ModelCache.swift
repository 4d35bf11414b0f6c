import Catalog
import Foundation
import Hubs
import Synchronization

/// A version whose every file is verified and ready to be placed in the cache, exactly as a pull places it.
package struct VerifiedVersion {
    /// Where a file's verified bytes are now.
    package enum Content {
        /// Already a blob in the cache.
        case present
        /// A verified temporary file in `<data>/tmp`, moved into `blobs/` by a rename.
        case staged(URL)
        /// A file elsewhere on this host (an adopted cache or directory): hard-linked into `blobs/`, copied when
        /// a link is impossible (another file system, no permission).
        case external(URL)
    }

    package struct File {
        package var path: HubPath
        package var size: Int64
        package var hash: String
        package var kind: HashKind
        package var sourceCommit: String?
        package var content: Content

        package init(path: HubPath, size: Int64, hash: String, kind: HashKind, sourceCommit: String? = nil, content: Content) {
            self.path = path
            self.size = size
            self.hash = hash
            self.kind = kind
            self.sourceCommit = sourceCommit
            self.content = content
        }
    }

    package var source: ModelSource
    package var repo: String
    /// The revision recorded as requested (and written as a ref on Hugging Face, unless it is a commit).
    package var revision: String
    package var commit: String
    package var files: [File]
    /// More refs to point at the commit (an adopted cache's other branches and tags).
    package var extraRefs: [String] = []

    package init(source: ModelSource, repo: String, revision: String, commit: String, files: [File], extraRefs: [String] = []) {
        self.source = source
        self.repo = repo
        self.revision = revision
        self.commit = commit
        self.files = files
        self.extraRefs = extraRefs
    }
}

/// How the bytes of an adopted version got into the cache (staged archive files are moved, not counted).
package struct InstallCounts: Sendable {
    package var linkedBytes: Int64 = 0
    package var copiedBytes: Int64 = 0
}

/// The model cache in the data directory: each version's directory and blobs, laid out for its hub
/// (``HuggingFaceCache``, ``ModelScopeCache``). Pulls, imports and adoptions all place versions through it, and
/// claim a repository here while they change its files.
package final class ModelCache: Sendable {
    package let dataDirectory: DataDirectory
    /// Where installed versions are recorded.
    package let store: Store
    package let huggingFace: HuggingFaceCache
    package let modelScope: ModelScopeCache
    /// Repositories whose cache entries an import, adoption or removal is changing (`source/repo`), with what it
    /// is: pulls of them wait; the others are refused meanwhile.
    private let claims = Mutex([String: String]())

    package init(dataDirectory: DataDirectory, store: Store) {
        self.dataDirectory = dataDirectory
        self.store = store
        huggingFace = HuggingFaceCache(root: dataDirectory.huggingFaceHub)
        modelScope = ModelScopeCache(root: dataDirectory.modelScope)
    }

    /// Runs `body` while no other import, adoption or removal of the repository runs beside it: they all change
    /// its blobs, snapshots and versions.
    /// - Parameters:
    ///   - what: what `body` does, as an error refusing another operation names it (`an import`).
    ///   - admit: checked once the claim is held (so what starts from then on waits for it); throws to refuse.
    /// - Throws: ``PullError/Code/busy`` when another such operation holds the repository.
    package func claiming<T>(
        source: ModelSource, repo: String, for what: String, admit: () throws -> Void = {}, _ body: () throws -> T
    ) throws -> T {
        let key = "\(source.rawValue)/\(repo)"
        if let holder = claims.withLock({ claims -> String? in
            if let holder = claims[key] { return holder }
            claims[key] = what
            return nil
        }) {
            throw PullError(.busy, "\(repo) is busy with \(holder); try again when it is done")
        }
        defer { _ = claims.withLock { $0.removeValue(forKey: key) } }
        try admit()
        return try body()
    }

    /// Waits while an import, adoption or removal changes the repository (renames, links or copies, and
    /// the store).
    package func waitUntilUnclaimed(source: ModelSource, repo: String, cancel: CancellationFlag) async throws {
        let key = "\(source.rawValue)/\(repo)"
        while claims.withLock({ $0[key] != nil }) {
            if cancel.isCancelled { throw PullError.cancelled(repo) }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    /// A new, empty directory `<data>/tmp/<prefix><random>` for files on their way into the cache.
    package func makeStagingDirectory(prefix: String) throws -> URL {
        let staging = dataDirectory.tmp.appending(path: prefix + UUID().uuidString.prefix(12), directoryHint: .isDirectory)
        do {
            try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
        } catch {
            throw PullError(.storage, "cannot create \(staging.path): \(error.localizedDescription)")
        }
        return staging
    }

    /// Where a version's files are: its Hugging Face snapshot or its ModelScope version directory.
    package func versionDirectory(_ source: ModelSource, repo: String, commit: String) -> URL {
        switch source {
        case .huggingface: huggingFace.snapshot(repo: repo, commit: commit)
        case .modelscope: modelScope.versionDirectory(repo: repo, version: commit)
        }
    }

    /// Deletes a version's directory, the refs pointing at it, and the given blobs no other version uses.
    package func removeVersion(_ source: ModelSource, repo: String, commit: String, unusedBlobs: Set<String>) throws {
        switch source {
        case .huggingface: try huggingFace.removeVersion(repo: repo, commit: commit, unusedBlobs: unusedBlobs)
        case .modelscope: try modelScope.removeVersion(repo: repo, version: commit, unusedBlobs: unusedBlobs)
        }
    }

    /// Places a verified version in the cache — blobs, snapshot links, refs — and records it as ready, with the
    /// same layout and store records a pull of the same commit produces. On failure it removes the blobs and the
    /// snapshot it created and leaves the store as it was. The caller holds the repository's claim
    /// (``claiming(source:repo:for:admit:_:)``).
    /// Blocking: call it from a dedicated thread.
    /// - Throws: ``PullError`` for the files, the store's errors for the records.
    package func install(_ version: VerifiedVersion) throws -> (LocalVersion, InstallCounts) {
        let repo = version.repo
        let versionDirectory = self.versionDirectory(version.source, repo: repo, commit: version.commit)
        let directoryExisted = FileManager.default.fileExists(atPath: versionDirectory.path)
        var createdBlobs: [URL] = []
        var counts = InstallCounts()
        do {
            var done = Set<String>()
            for file in version.files where done.insert(file.hash).inserted {
                let blob = blobURL(version.source, repo: repo, hash: file.hash)
                if hasBlob(version.source, repo: repo, hash: file.hash, size: file.size) {
                    if case .staged(let url) = file.content { unlink(url.path) }
                    continue
                }
                switch file.content {
                case .present:
                    throw PullError(.storage, "the blob of \(file.path) vanished from \(blob.deletingLastPathComponent().path) during the import")
                case .staged(let url):
                    try installStaged(version.source, repo: repo, hash: file.hash, from: url)
                case .external(let url):
                    if try linkOrCopy(url, to: blob) { counts.linkedBytes += file.size } else { counts.copiedBytes += file.size }
                }
                createdBlobs.append(blob)
            }
            for file in version.files {
                switch version.source {
                case .huggingface: try huggingFace.link(repo: repo, commit: version.commit, path: file.path, etag: file.hash)
                case .modelscope: try modelScope.link(repo: repo, version: version.commit, path: file.path, sha256: file.hash)
                }
            }
            if version.source == .huggingface {
                for ref in [version.revision] + version.extraRefs where !HuggingFaceHub.isCommit(ref) {
                    try huggingFace.writeRef(repo: repo, revision: ref, commit: version.commit)
                }
            }
            let total = version.files.reduce(0) { $0 + $1.size }
            // One transaction: the store keeps its earlier record of the version if this one fails.
            return try store.writeBlocking { db in
                let begun = try Store.beginVersion(
                    db, source: version.source.rawValue, repo: repo, revision: version.revision, commit: version.commit,
                    path: versionDirectory.path, totalBytes: total)
                let records = version.files.map { file in
                    FileRecord(
                        versionID: begun.version.id!, path: file.path.value, size: file.size, hash: file.hash, hashKind: file.kind.rawValue,
                        verified: true, sourceCommit: file.sourceCommit)
                }
                let ready = try Store.completeVersion(db, id: begun.version.id!, files: records)
                return (LocalVersion(model: begun.model, version: ready), counts)
            }
        } catch {
            for blob in createdBlobs { unlink(blob.path) }
            // A snapshot this install created goes, with the refs it wrote and the directories left empty.
            switch version.source {
            case .huggingface:
                if !directoryExisted { try? huggingFace.removeVersion(repo: repo, commit: version.commit, unusedBlobs: []) }
                removeEmptyDirectories(under: huggingFace.repoDirectory(repo))
            case .modelscope:
                if !directoryExisted { try? modelScope.removeVersion(repo: repo, version: version.commit, unusedBlobs: []) }
                removeEmptyDirectories(under: modelScope.repoDirectory(repo))
            }
            throw error
        }
    }

    package func blobURL(_ source: ModelSource, repo: String, hash: String) -> URL {
        switch source {
        case .huggingface: huggingFace.blob(repo: repo, etag: hash)
        case .modelscope: modelScope.blob(repo: repo, sha256: hash)
        }
    }

    package func hasBlob(_ source: ModelSource, repo: String, hash: String, size: Int64) -> Bool {
        switch source {
        case .huggingface: huggingFace.hasBlob(repo: repo, etag: hash, size: size)
        case .modelscope: modelScope.hasBlob(repo: repo, sha256: hash, size: size)
        }
    }

    private func installStaged(_ source: ModelSource, repo: String, hash: String, from url: URL) throws {
        switch source {
        case .huggingface: try huggingFace.installBlob(repo: repo, etag: hash, from: url)
        case .modelscope: try modelScope.installBlob(repo: repo, sha256: hash, from: url)
        }
    }

    /// Hard-links `source` to `target` (through a temporary name and a rename), or copies it when the two are on
    /// different file systems or linking is not permitted.
    /// - Returns: true when linked, false when copied.
    private func linkOrCopy(_ source: URL, to target: URL) throws -> Bool {
        let directory = target.deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw PullError(.storage, "cannot create \(directory.path): \(error.localizedDescription)")
        }
        let temporary = target.path + ".modeld-\(UUID().uuidString.prefix(8))"
        var linked = true
        if link(source.path, temporary) != 0 {
            let code = errno
            guard code == EXDEV || code == EPERM || code == EMLINK || code == EACCES else {
                throw storageError(code, "cannot link \(source.path) into \(directory.path)")
            }
            linked = false
            do {
                try FileManager.default.copyItem(atPath: source.path, toPath: temporary)
            } catch {
                unlink(temporary)
                throw storageError((error as? POSIXError)?.code.rawValue ?? EIO, "cannot copy \(source.path) into \(directory.path)")
            }
        }
        guard rename(temporary, target.path) == 0 else {
            let code = errno
            unlink(temporary)
            throw storageError(code, "cannot place \(target.path)")
        }
        return linked
    }
}
