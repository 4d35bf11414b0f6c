import Catalog
import Downloads
import Foundation
import Hubs
import Logging
import ModelStore

/// What an adoption registered, and what it left alone and why.
package struct AdoptOutcome: Sendable {
    package struct Skipped: Sendable {
        package var path: String
        package var reason: String
    }

    package var adopted: [LocalVersion] = []
    package var skipped: [Skipped] = []
    /// Bytes that entered the cache as hard links (no copy), and bytes that had to be copied.
    package var linkedBytes: Int64 = 0
    package var copiedBytes: Int64 = 0
}

extension ArchiveService {
    /// Registers every model snapshot of an existing Hugging Face hub cache (such as `~/.cache/huggingface/hub`)
    /// without copying bytes: each blob is hashed, checked against its name, and hard-linked into modeld's cache
    /// (copied only across file systems). Incomplete or damaged snapshots are skipped with the reason.
    /// - Parameter root: the hub cache, or the `HF_HOME` directory above it.
    /// - Throws: ``ArchiveError`` when `root` is no hub cache.
    package func adoptHuggingFaceCache(at root: URL) async throws -> AdoptOutcome {
        let flag = CancellationFlag()
        return try await onCancellableThread(flag) { try self.adoptHuggingFaceCacheBlocking(at: root, cancel: flag) }
    }

    /// Registers a plain model directory (a `git clone`, a `local_dir` download) as the Hugging Face repository
    /// `repo`, hard-linking its files into the cache. The version is named by a digest of its file list, like
    /// a ModelScope version, and recorded under `revision` (default `local`, written as `refs/local`).
    /// - Throws: ``ArchiveError`` when the directory is missing or holds something that is not a regular file.
    package func adoptDirectory(at root: URL, repo: String, revision: String? = nil) async throws -> AdoptOutcome {
        let flag = CancellationFlag()
        return try await onCancellableThread(flag) { try self.adoptDirectoryBlocking(at: root, repo: repo, revision: revision, cancel: flag) }
    }

    // MARK: Hugging Face cache

    func adoptHuggingFaceCacheBlocking(at given: URL, cancel: CancellationFlag) throws -> AdoptOutcome {
        let root = try hubCacheRoot(given)
        let foreign = HuggingFaceCache(root: root)
        var outcome = AdoptOutcome()
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).sorted()
        for name in names where name.hasPrefix("models--") {
            let repoDirectory = root.appending(path: name, directoryHint: .isDirectory)
            let parts = name.dropFirst("models--".count).split(separator: "--", maxSplits: 1)
            let repo = parts.joined(separator: "/")
            guard parts.count == 2, (try? PullRequest(repo: repo).validate()) != nil else {
                outcome.skipped.append(.init(path: repoDirectory.path, reason: "\(name) does not name a repository owner--name"))
                continue
            }
            let refs = foreign.refs(repo: repo)
            let snapshots = repoDirectory.appending(path: "snapshots", directoryHint: .isDirectory)
            let commits = ((try? FileManager.default.contentsOfDirectory(atPath: snapshots.path)) ?? []).sorted()
            for commit in commits {
                if cancel.isCancelled { throw ArchiveError(.cancelled, "adoption of \(root.path) was cancelled") }
                let snapshot = snapshots.appending(path: commit, directoryHint: .isDirectory)
                guard HuggingFaceHub.isCommit(commit) else {
                    outcome.skipped.append(.init(path: snapshot.path, reason: "\(commit) is not a commit"))
                    continue
                }
                let names = refs.filter { $0.commit == commit }.map(\.revision).sorted { ($0 == "main" ? 0 : 1, $0) < ($1 == "main" ? 0 : 1, $1) }
                do {
                    let files = try snapshotFiles(snapshot, repo: repo, blobs: repoDirectory.appending(path: "blobs"), cancel: cancel)
                    let (version, counts) = try install(
                        VerifiedVersion(
                            source: .huggingface, repo: repo, revision: names.first ?? commit, commit: commit, files: files,
                            extraRefs: Array(names.dropFirst())),
                        for: "an adoption")
                    outcome.adopted.append(version)
                    outcome.linkedBytes += counts.linkedBytes
                    outcome.copiedBytes += counts.copiedBytes
                } catch let error as ArchiveError where error.code != .cancelled && error.code != .diskFull {
                    outcome.skipped.append(.init(path: snapshot.path, reason: error.message))
                }
            }
        }
        logger.info(
            "adopted a Hugging Face cache",
            metadata: ["path": "\(root.path)", "versions": "\(outcome.adopted.count)", "skipped": "\(outcome.skipped.count)"])
        return outcome
    }

    /// The hub cache at `given`, or at `given/hub` (an `HF_HOME`); never modeld's own.
    private func hubCacheRoot(_ given: URL) throws -> URL {
        let fileManager = FileManager.default
        func hasModels(_ url: URL) -> Bool {
            ((try? fileManager.contentsOfDirectory(atPath: url.path)) ?? []).contains { $0.hasPrefix("models--") }
        }
        var isDirectory: ObjCBool = false
        guard fileManager.fileExists(atPath: given.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ArchiveError(.notFound, "\(given.path) is not a directory")
        }
        let root = hasModels(given) ? given : given.appending(path: "hub", directoryHint: .isDirectory)
        guard hasModels(root) else {
            throw ArchiveError(
                .notFound, "\(given.path) holds no models--* directories: give a Hugging Face hub cache such as ~/.cache/huggingface/hub")
        }
        if root.resolvingSymlinksInPath().path == cache.dataDirectory.huggingFaceHub.resolvingSymlinksInPath().path {
            throw ArchiveError(.unsupported, "\(root.path) is modeld's own cache")
        }
        return root
    }

    /// Every file of a snapshot, verified: each symlink must lead to a blob of the same repository whose content
    /// matches its name (sha256 for LFS files, git-sha1 for the rest); a plain file is hashed with sha256.
    private func snapshotFiles(_ snapshot: URL, repo: String, blobs: URL, cancel: CancellationFlag) throws -> [VerifiedVersion.File] {
        let blobsPath = blobs.resolvingSymlinksInPath().path + "/"
        var files: [VerifiedVersion.File] = []
        for relative in try walkFiles(snapshot, skipping: []) {
            if cancel.isCancelled { throw ArchiveError(.cancelled, "adoption was cancelled") }
            let path = try HubPath(archived: relative, repo: repo)
            let url = snapshot.appending(path: relative)
            let real = url.resolvingSymlinksInPath()
            var info = stat()
            guard stat(url.path, &info) == 0 else {
                throw ArchiveError(.notFound, "incomplete snapshot: \(relative) points to a missing blob")
            }
            guard (info.st_mode & S_IFMT) == S_IFREG else {
                throw ArchiveError(.unsafeEntry, "\(relative) is not a regular file")
            }
            var kind = HashKind.sha256
            var expected: String?
            var linkInfo = stat()
            if lstat(url.path, &linkInfo) == 0, (linkInfo.st_mode & S_IFMT) == S_IFLNK {
                guard real.path.hasPrefix(blobsPath) else {
                    throw ArchiveError(.unsafeEntry, "\(relative) points outside the repository's blobs (\(real.path))")
                }
                let name = real.lastPathComponent
                if name.allSatisfy(\.isHexDigit) && (name.count == 64 || name.count == 40) {
                    kind = name.count == 64 ? .sha256 : .gitSHA1
                    expected = name.lowercased()
                }
            }
            let (digest, size) = try hashFile(real, kind: kind)
            if let expected, digest != expected {
                throw ArchiveError(
                    .checksumMismatch, "\(relative) is damaged or incomplete: its \(kind.rawValue) is \(digest), its blob is named \(expected)")
            }
            files.append(.init(path: path, size: size, hash: digest, kind: kind, content: .external(real)))
        }
        guard !files.isEmpty else { throw ArchiveError(.notFound, "the snapshot is empty") }
        return files
    }

    // MARK: Plain directory

    func adoptDirectoryBlocking(at root: URL, repo: String, revision: String?, cancel: CancellationFlag) throws -> AdoptOutcome {
        do {
            try PullRequest(repo: repo).validate()
        } catch {
            throw ArchiveError(.unsupported, "\"\(repo)\" is not a name of the form owner/name")
        }
        let revision = revision.flatMap { $0.isEmpty ? nil : $0 } ?? "local"
        guard (try? HubPath(revision, repo: repo)) != nil, !HuggingFaceHub.isCommit(revision) else {
            throw ArchiveError(.unsupported, "\"\(revision)\" is not a usable revision name")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ArchiveError(.notFound, "\(root.path) is not a directory")
        }
        let base = root.resolvingSymlinksInPath().path + "/"
        var files: [VerifiedVersion.File] = []
        // Git's own data and huggingface_hub's local_dir metadata are not model files.
        for relative in try walkFiles(root, skipping: [".git", ".cache"]) {
            if cancel.isCancelled { throw ArchiveError(.cancelled, "adoption of \(root.path) was cancelled") }
            let path = try HubPath(archived: relative, repo: repo)
            let url = root.appending(path: relative)
            let real = url.resolvingSymlinksInPath()
            guard real.path.hasPrefix(base) else {
                throw ArchiveError(.unsafeEntry, "refusing \(relative): it is a symlink to \(real.path), outside \(root.path)")
            }
            var info = stat()
            guard stat(real.path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
                throw ArchiveError(.unsafeEntry, "refusing \(relative): it is not a regular file")
            }
            let (digest, size) = try hashFile(real, kind: .sha256)
            files.append(.init(path: path, size: size, hash: digest, kind: .sha256, content: .external(real)))
        }
        guard !files.isEmpty else { throw ArchiveError(.notFound, "\(root.path) holds no files") }
        let commit = ModelScopeCache.versionName(of: files.map { ($0.path.value, $0.hash, $0.size) })
        let (version, counts) = try install(
            VerifiedVersion(source: .huggingface, repo: repo, revision: revision, commit: commit, files: files), for: "an adoption")
        logger.info("adopted a directory", metadata: ["path": "\(root.path)", "repo": "\(repo)", "commit": "\(commit)"])
        return AdoptOutcome(adopted: [version], skipped: [], linkedBytes: counts.linkedBytes, copiedBytes: counts.copiedBytes)
    }

    // MARK: Helpers

    /// Relative paths of every non-directory under `root`, sorted; symlinked directories are not followed.
    private func walkFiles(_ root: URL, skipping topLevel: Set<String>) throws -> [String] {
        var result: [String] = []
        func walk(_ directory: URL, prefix: String) throws {
            let names: [String]
            do {
                names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            } catch {
                throw ArchiveError(.storage, "cannot read \(directory.path): \(error.localizedDescription)")
            }
            for name in names.sorted() {
                if prefix.isEmpty && topLevel.contains(name) { continue }
                let url = directory.appending(path: name)
                var info = stat()
                guard lstat(url.path, &info) == 0 else { continue }
                if (info.st_mode & S_IFMT) == S_IFDIR {
                    try walk(url, prefix: prefix + name + "/")
                } else {
                    result.append(prefix + name)
                }
            }
        }
        try walk(root, prefix: "")
        return result
    }

    private func hashFile(_ url: URL, kind: HashKind) throws -> (String, Int64) {
        do {
            return try ContentHasher.digest(ofFileAt: url.path, kind: kind)
        } catch {
            throw ArchiveError(.storage, "cannot read \(url.path): \(error)")
        }
    }
}
