import Crypto
import Foundation
import Hubs

/// Where ModelScope models live under `<data>/modelscope` (docs/design/hubs.md, ModelScope layout).
///
/// ```
/// <owner>/<name>/.blobs/<sha256>           each distinct file content once, written by rename when verified
/// <owner>/<name>/<version>/<path>          relative symlink ../.blobs/<sha256>, one more ../ per level
/// ```
/// ModelScope's API names no repository commit (each listed file carries the commit it came from), so a
/// version is named by a digest of its file list: the first 40 hex digits of the SHA-256 of every
/// `path NUL sha256 NUL size LF`, sorted by path. Pulling unchanged content again is the same version;
/// any change makes a new directory beside the old one, sharing the unchanged blobs. `.blobs` cannot
/// clash with a version name (they are hex). Engines load `<owner>/<name>/<version>/`.
package struct ModelScopeCache: Sendable {
    package let root: URL

    package init(root: URL) {
        self.root = root
    }

    package func repoDirectory(_ repo: String) -> URL {
        root.appending(path: repo, directoryHint: .isDirectory)
    }

    package func blob(repo: String, sha256: String) -> URL {
        repoDirectory(repo).appending(path: ".blobs/\(sha256)", directoryHint: .notDirectory)
    }

    package func versionDirectory(repo: String, version: String) -> URL {
        repoDirectory(repo).appending(path: version, directoryHint: .isDirectory)
    }

    /// The version name of a file list (see the type's documentation).
    package static func versionName(of files: [(path: String, sha256: String, size: Int64)]) -> String {
        var hash = SHA256()
        for file in files.sorted(by: { $0.path < $1.path }) {
            hash.update(data: Data("\(file.path)\0\(file.sha256)\0\(file.size)\n".utf8))
        }
        return String(hash.finalize().map { String(format: "%02x", $0) }.joined().prefix(40))
    }

    /// A layout that reuses the Hugging Face cache's careful file operations with different names.
    private var layout: HuggingFaceCache { HuggingFaceCache(root: root) }

    package func hasBlob(repo: String, sha256: String, size: Int64) -> Bool {
        var info = stat()
        guard lstat(blob(repo: repo, sha256: sha256).path, &info) == 0 else { return false }
        return (info.st_mode & S_IFMT) == S_IFREG && Int64(info.st_size) == size
    }

    package func installBlob(repo: String, sha256: String, from partial: URL) throws {
        let target = blob(repo: repo, sha256: sha256)
        try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        if rename(partial.path, target.path) == 0 { return }
        let code = errno
        guard code == EXDEV else { throw storageError(code, "cannot move \(partial.path) to \(target.path)") }
        let staging = target.path + ".incomplete"
        unlink(staging)
        try FileManager.default.copyItem(atPath: partial.path, toPath: staging)
        guard rename(staging, target.path) == 0 else { throw storageError(errno, "cannot rename \(staging)") }
        unlink(partial.path)
    }

    /// Links `<version>/<path>` to its blob (relative symlink, placed atomically, no escape through symlinks).
    package func link(repo: String, version: String, path: HubPath, sha256: String) throws {
        let directory = versionDirectory(repo: repo, version: version)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var current = directory
        for component in path.components.dropLast() {
            current = current.appending(path: String(component), directoryHint: .isDirectory)
            var info = stat()
            if lstat(current.path, &info) == 0 {
                guard (info.st_mode & S_IFMT) == S_IFDIR else {
                    throw PullError(
                        .unsafePath, "refusing file name \"\(path)\" from \(repo): \(current.lastPathComponent) is already a file or symlink")
                }
            } else if mkdir(current.path, 0o755) != 0 && errno != EEXIST {
                throw storageError(errno, "cannot create \(current.path)")
            }
        }
        let linkPath = directory.appending(path: path.value).path
        let target = String(repeating: "../", count: path.depth + 1) + ".blobs/" + sha256
        if (try? FileManager.default.destinationOfSymbolicLink(atPath: linkPath)) == target { return }
        let temporary = linkPath + ".modeld-\(UUID().uuidString.prefix(8))"
        guard symlink(target, temporary) == 0 else { throw storageError(errno, "cannot create a symlink at \(temporary)") }
        guard rename(temporary, linkPath) == 0 else {
            let code = errno
            unlink(temporary)
            throw storageError(code, "cannot place the symlink \(linkPath)")
        }
    }

    /// Deletes a version directory and the given unused blobs, then empty directories.
    package func removeVersion(repo: String, version: String, unusedBlobs: Set<String>) throws {
        let directory = versionDirectory(repo: repo, version: version)
        if FileManager.default.fileExists(atPath: directory.path) { try FileManager.default.removeItem(at: directory) }
        for sha in unusedBlobs { unlink(blob(repo: repo, sha256: sha).path) }
        removeEmptyDirectories(under: repoDirectory(repo))
        removeEmptyDirectories(under: repoDirectory(repo).deletingLastPathComponent())
    }
}
