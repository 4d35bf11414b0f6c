import Foundation
import Hubs

/// The Hugging Face hub cache modeld writes under `<data>/huggingface/hub` (docs/design/hubs.md, Cache layout), so that
/// transformers, vLLM and SGLang load models offline with `HF_HUB_CACHE` and `HF_HUB_OFFLINE=1`.
///
/// ```
/// models--acme--tiny/refs/main                      the commit, no trailing newline (branch/tag names only)
/// models--acme--tiny/blobs/<etag>                   sha256 (LFS) or git sha1; written by rename when verified
/// models--acme--tiny/snapshots/<commit>/<path>      relative symlink ../../blobs/<etag>, one more ../ per level
/// ```
/// A snapshot entry appears only after its blob is complete and verified, so no partial file is ever
/// visible there. Blobs are shared by every snapshot of the repository that has the same content.
package struct HuggingFaceCache: Sendable {
    package let root: URL

    package init(root: URL) {
        self.root = root
    }

    /// `models--` + the repository id with `/` replaced by `--`.
    package func repoDirectory(_ repo: String) -> URL {
        root.appending(path: "models--" + repo.replacingOccurrences(of: "/", with: "--"), directoryHint: .isDirectory)
    }

    package func blob(repo: String, etag: String) -> URL {
        repoDirectory(repo).appending(path: "blobs/\(etag)", directoryHint: .notDirectory)
    }

    package func snapshot(repo: String, commit: String) -> URL {
        repoDirectory(repo).appending(path: "snapshots/\(commit)", directoryHint: .isDirectory)
    }

    package func ref(repo: String, revision: String) -> URL {
        repoDirectory(repo).appending(path: "refs/\(revision)", directoryHint: .notDirectory)
    }

    /// Whether the blob is present with the expected size.
    package func hasBlob(repo: String, etag: String, size: Int64) -> Bool {
        var info = stat()
        guard lstat(blob(repo: repo, etag: etag).path, &info) == 0 else { return false }
        return (info.st_mode & S_IFMT) == S_IFREG && Int64(info.st_size) == size
    }

    /// Moves a verified partial file into `blobs/` (a rename: the blob appears whole or not at all).
    package func installBlob(repo: String, etag: String, from partial: URL) throws {
        let directory = repoDirectory(repo).appending(path: "blobs", directoryHint: .isDirectory)
        try makeDirectory(directory)
        let target = blob(repo: repo, etag: etag)
        if rename(partial.path, target.path) == 0 { return }
        let code = errno
        guard code == EXDEV else { throw storageError(code, "cannot move \(partial.path) to \(target.path)") }
        // <data>/tmp on another file system: copy beside the target, then rename.
        let staging = directory.appending(path: "\(etag).incomplete")
        unlink(staging.path)
        do {
            try FileManager.default.copyItem(at: partial, to: staging)
        } catch {
            unlink(staging.path)
            throw storageError((error as? POSIXError)?.code.rawValue ?? EIO, "cannot copy \(partial.path) to \(staging.path)")
        }
        guard rename(staging.path, target.path) == 0 else { throw storageError(errno, "cannot rename \(staging.path)") }
        unlink(partial.path)
    }

    /// Links `snapshots/<commit>/<path>` to its blob with a relative symlink, atomically.
    /// - Throws: ``PullError`` (`unsafePath`) when a directory on the way is a symlink or a file, which
    ///   could make the link land outside the snapshot.
    package func link(repo: String, commit: String, path: HubPath, etag: String) throws {
        let snapshot = snapshot(repo: repo, commit: commit)
        try makeDirectory(snapshot)
        var directory = snapshot
        for component in path.components.dropLast() {
            directory = directory.appending(path: String(component), directoryHint: .isDirectory)
            var info = stat()
            if lstat(directory.path, &info) == 0 {
                guard (info.st_mode & S_IFMT) == S_IFDIR else {
                    throw PullError(
                        .unsafePath,
                        "refusing file name \"\(path)\" from \(repo): \(directory.lastPathComponent) is already a file or symlink in the snapshot")
                }
            } else {
                guard mkdir(directory.path, 0o755) == 0 || errno == EEXIST else {
                    throw storageError(errno, "cannot create \(directory.path)")
                }
            }
        }
        let linkURL = snapshot.appending(path: path.value, directoryHint: .notDirectory)
        let target = String(repeating: "../", count: path.depth + 2) + "blobs/" + etag
        var existing = stat()
        if lstat(linkURL.path, &existing) == 0 {
            if (existing.st_mode & S_IFMT) == S_IFLNK, let current = try? FileManager.default.destinationOfSymbolicLink(atPath: linkURL.path),
                current == target
            {
                return
            }
            guard (existing.st_mode & S_IFMT) != S_IFDIR else {
                throw PullError(.unsafePath, "refusing file name \"\(path)\" from \(repo): a directory of that name exists")
            }
        }
        let temporary = linkURL.path + ".modeld-\(UUID().uuidString.prefix(8))"
        guard symlink(target, temporary) == 0 else { throw storageError(errno, "cannot create a symlink at \(temporary)") }
        guard rename(temporary, linkURL.path) == 0 else {
            let code = errno
            unlink(temporary)
            throw storageError(code, "cannot place the symlink \(linkURL.path)")
        }
    }

    /// Writes `refs/<revision>` = commit with no trailing newline, via a temporary file and a rename.
    package func writeRef(repo: String, revision: String, commit: String) throws {
        let revisionPath = try HubPath(revision, repo: repo)
        let refURL = ref(repo: repo, revision: revisionPath.value)
        try makeDirectory(refURL.deletingLastPathComponent())
        let temporary = refURL.path + ".modeld-\(UUID().uuidString.prefix(8))"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(commit.utf8)) else {
            throw storageError(errno, "cannot write \(temporary)")
        }
        guard rename(temporary, refURL.path) == 0 else {
            let code = errno
            unlink(temporary)
            throw storageError(code, "cannot write \(refURL.path)")
        }
    }

    /// Every `refs/...` file as (revision, commit).
    package func refs(repo: String) -> [(revision: String, commit: String)] {
        let refsDirectory = repoDirectory(repo).appending(path: "refs", directoryHint: .isDirectory)
        guard let enumerator = FileManager.default.enumerator(atPath: refsDirectory.path) else { return [] }
        var result: [(String, String)] = []
        while let relative = enumerator.nextObject() as? String {
            let full = refsDirectory.appending(path: relative).path
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: full, isDirectory: &isDirectory), !isDirectory.boolValue,
                let text = try? String(contentsOfFile: full, encoding: .utf8)
            else { continue }
            result.append((relative, text))
        }
        return result
    }

    /// Deletes a snapshot, the refs pointing at it, the given unused blobs, and then empty directories.
    package func removeVersion(repo: String, commit: String, unusedBlobs: Set<String>) throws {
        let fileManager = FileManager.default
        let snapshot = snapshot(repo: repo, commit: commit)
        if fileManager.fileExists(atPath: snapshot.path) { try fileManager.removeItem(at: snapshot) }
        for ref in refs(repo: repo) where ref.commit == commit {
            unlink(self.ref(repo: repo, revision: ref.revision).path)
        }
        for etag in unusedBlobs {
            unlink(blob(repo: repo, etag: etag).path)
        }
        removeEmptyDirectories(under: repoDirectory(repo))
    }

    private func makeDirectory(_ url: URL) throws {
        do {
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        } catch {
            throw storageError((error as? POSIXError)?.code.rawValue ?? EIO, "cannot create \(url.path)")
        }
    }
}

/// Removes empty directories bottom-up, the root included when it ends up empty.
func removeEmptyDirectories(under root: URL) {
    let fileManager = FileManager.default
    guard let children = try? fileManager.contentsOfDirectory(atPath: root.path) else { return }
    for child in children {
        let url = root.appending(path: child)
        var info = stat()
        if lstat(url.path, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR {
            removeEmptyDirectories(under: url)
        }
    }
    if (try? fileManager.contentsOfDirectory(atPath: root.path))?.isEmpty == true {
        rmdir(root.path)
    }
}
