import Foundation

/// A version whose every file is verified and ready to be placed in the cache, exactly as a pull places it.
struct VerifiedVersion {
    /// Where a file's verified bytes are now.
    enum Content {
        /// Already a blob in the cache.
        case present
        /// A verified temporary file in `<data>/tmp`, moved into `blobs/` by a rename.
        case staged(URL)
        /// A file elsewhere on this host (an adopted cache or directory): hard-linked into `blobs/`, copied when
        /// a link is impossible (another file system, no permission).
        case external(URL)
    }

    struct File {
        var path: HubPath
        var size: Int64
        var hash: String
        var kind: HashKind
        var sourceCommit: String?
        var content: Content
    }

    var source: ModelSource
    var repo: String
    /// The revision recorded as requested (and written as a ref on Hugging Face, unless it is a commit).
    var revision: String
    var commit: String
    var files: [File]
    /// More refs to point at the commit (an adopted cache's other branches and tags).
    var extraRefs: [String] = []
}

/// How the bytes of an adopted version got into the cache (staged archive files are moved, not counted).
struct InstallCounts {
    var linkedBytes: Int64 = 0
    var copiedBytes: Int64 = 0
}

extension PullService {
    /// Places a verified version in the cache — blobs, snapshot links, refs — and records it as ready, with the
    /// same layout and store records a pull of the same commit produces. On failure it removes the blobs and the
    /// snapshot it created and leaves the store as it was. No pull, removal or other install of the repository
    /// runs meanwhile (``claiming(source:repo:for:_:)``).
    /// Blocking: call it from a dedicated thread.
    /// - Parameter what: the operation, as a refusal of another one names it (`an import`).
    func install(_ version: VerifiedVersion, for what: String) throws -> (LocalVersion, InstallCounts) {
        do {
            return try claiming(source: version.source, repo: version.repo, for: what) { try installClaimed(version) }
        } catch let error as PullError {
            throw ArchiveError(error)
        }
    }

    private func installClaimed(_ version: VerifiedVersion) throws -> (LocalVersion, InstallCounts) {
        let repo = version.repo
        let versionDirectory: URL
        switch version.source {
        case .huggingface: versionDirectory = huggingFaceCache.snapshot(repo: repo, commit: version.commit)
        case .modelscope: versionDirectory = modelScopeCache.versionDirectory(repo: repo, version: version.commit)
        }
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
                    throw ArchiveError(.storage, "the blob of \(file.path) vanished from \(blob.deletingLastPathComponent().path) during the import")
                case .staged(let url):
                    try installStaged(version.source, repo: repo, hash: file.hash, from: url)
                case .external(let url):
                    if try linkOrCopy(url, to: blob) { counts.linkedBytes += file.size } else { counts.copiedBytes += file.size }
                }
                createdBlobs.append(blob)
            }
            for file in version.files {
                switch version.source {
                case .huggingface: try huggingFaceCache.link(repo: repo, commit: version.commit, path: file.path, etag: file.hash)
                case .modelscope: try modelScopeCache.link(repo: repo, version: version.commit, path: file.path, sha256: file.hash)
                }
            }
            if version.source == .huggingface {
                for ref in [version.revision] + version.extraRefs where !HuggingFaceHub.isCommit(ref) {
                    try huggingFaceCache.writeRef(repo: repo, revision: ref, commit: version.commit)
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
                if !directoryExisted { try? huggingFaceCache.removeVersion(repo: repo, commit: version.commit, unusedBlobs: []) }
                removeEmptyDirectories(under: huggingFaceCache.repoDirectory(repo))
            case .modelscope:
                if !directoryExisted { try? modelScopeCache.removeVersion(repo: repo, version: version.commit, unusedBlobs: []) }
                removeEmptyDirectories(under: modelScopeCache.repoDirectory(repo))
            }
            throw error
        }
    }

    func blobURL(_ source: ModelSource, repo: String, hash: String) -> URL {
        switch source {
        case .huggingface: huggingFaceCache.blob(repo: repo, etag: hash)
        case .modelscope: modelScopeCache.blob(repo: repo, sha256: hash)
        }
    }

    func hasBlob(_ source: ModelSource, repo: String, hash: String, size: Int64) -> Bool {
        switch source {
        case .huggingface: huggingFaceCache.hasBlob(repo: repo, etag: hash, size: size)
        case .modelscope: modelScopeCache.hasBlob(repo: repo, sha256: hash, size: size)
        }
    }

    private func installStaged(_ source: ModelSource, repo: String, hash: String, from url: URL) throws {
        switch source {
        case .huggingface: try huggingFaceCache.installBlob(repo: repo, etag: hash, from: url)
        case .modelscope: try modelScopeCache.installBlob(repo: repo, sha256: hash, from: url)
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
            throw ArchiveError(.storage, "cannot create \(directory.path): \(error.localizedDescription)")
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
