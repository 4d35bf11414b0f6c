import Catalog
import Downloads
import Foundation
import Hubs
import Logging
import ModelStore

/// What an import registered.
package struct ImportOutcome: Sendable {
    package var version: LocalVersion
    package var files: Int
    package var bytes: Int64
}

extension ArchiveService {
    /// Imports a model archive (tar, tar.gz, tar.zst or zip with a ``ArchiveManifest`` first) in one pass over
    /// `input`, and registers the version as ready exactly as a pull of the same commit would.
    ///
    /// Each file is streamed into a temporary file under `<data>/tmp` while it is hashed; only when every file
    /// listed in the manifest has arrived with its size and hash are they moved into the cache. Refused, with
    /// nothing registered and no file left behind: entries with absolute paths or `..`, links that point outside
    /// the model, device files, FIFOs and sockets, files the manifest does not list or lists with another size,
    /// content that does not match its hash, and a truncated or unreadable archive.
    /// - Throws: ``ArchiveError``.
    package func importArchive(from input: any ArchiveInput) async throws -> ImportOutcome {
        let flag = CancellationFlag()
        return try await onCancellableThread(flag) { try self.importArchiveBlocking(from: input, cancel: flag) }
    }

    /// ``importArchive(from:)`` on the calling thread.
    package func importArchiveBlocking(from input: any ArchiveInput, cancel: CancellationFlag) throws -> ImportOutcome {
        let staging: URL
        do {
            staging = try cache.makeStagingDirectory(prefix: Self.importStagingPrefix)
        } catch let error as PullError {
            throw ArchiveError(error)
        }
        defer { try? FileManager.default.removeItem(at: staging) }

        let reader = try ArchiveReader(input: input)
        let manifest = try readManifest(reader)
        let repo = manifest.repo
        // Refused now rather than after the whole archive is read (the install checks again, and holds the repository).
        guard !pulls.isPulling(source: manifest.source, repo: repo) else { throw ArchiveError(PullError.beingPulled(repo)) }
        // What the import writes: each content once, and none the cache already holds.
        var counted = Set<String>()
        let needed = manifest.files.reduce(Int64(0)) { sum, file in
            guard counted.insert(file.hash).inserted, !cache.hasBlob(manifest.source, repo: repo, hash: file.hash, size: file.size) else {
                return sum
            }
            return sum + file.size
        }
        do {
            try pulls.checkFreeSpace(needed: needed, repo: repo, doing: "import")
        } catch let error as PullError {
            throw ArchiveError(error)
        }
        let expected = Dictionary(uniqueKeysWithValues: manifest.files.map { ($0.path, $0) })
        var received: [String: VerifiedVersion.Content] = [:]
        var stagedByHash: [String: URL] = [:]

        while let entry = try reader.next() {
            if cancel.isCancelled { throw ArchiveError(.cancelled, "import of \(repo) was cancelled") }
            guard let path = try Self.entryPath(entry.path) else { continue }
            if entry.isEncrypted { throw ArchiveError(.unsupported, "refusing \(path): encrypted archive entries are not supported") }
            let linkTarget: String?
            if let hardLink = entry.hardLinkTarget {
                // A hard link names another entry of the archive, whatever type its header gives.
                guard let resolved = try? Self.entryPath(hardLink) else {
                    throw ArchiveError(.unsafeEntry, "refusing \(path): it is a hard link to \(hardLink), outside the model")
                }
                linkTarget = resolved
            } else {
                switch entry.kind {
                case .directory:
                    continue
                case .other(let mode):
                    throw ArchiveError(.unsafeEntry, "refusing \(path): it is a \(Self.describe(mode: mode)), not a regular file")
                case .symlink(let target):
                    guard let resolved = Self.resolveLink(target, from: path) else {
                        throw ArchiveError(.unsafeEntry, "refusing \(path): it is a symlink to \(target), outside the model")
                    }
                    linkTarget = resolved
                case .file:
                    linkTarget = nil
                }
            }
            guard let file = expected[path] else {
                throw ArchiveError(.manifestMismatch, "refusing \(path): the archive's manifest does not list it")
            }
            guard received[path] == nil else {
                throw ArchiveError(.manifestMismatch, "refusing \(path): it appears twice in the archive")
            }
            if let target = linkTarget {
                // A link shares the content of a file that came earlier; the manifest must say they are the same.
                guard let content = received[target], let original = expected[target] else {
                    throw ArchiveError(.unsafeEntry, "refusing \(path): it links to \(target), which is not a file earlier in the archive")
                }
                guard original.hash == file.hash, original.size == file.size else {
                    throw ArchiveError(.checksumMismatch, "refusing \(path): it links to \(target), but the manifest gives them different content")
                }
                received[path] = content
                continue
            }
            if let size = entry.size, size != file.size {
                throw ArchiveError(
                    .manifestMismatch, "refusing \(path): it is \(size) bytes in the archive, but the manifest says \(file.size)")
            }
            if let staged = stagedByHash[file.hash] {
                // Same content as an earlier file: check it, keep one copy.
                try receive(reader, file: file, into: nil, cancel: cancel)
                received[path] = .staged(staged)
            } else if cache.hasBlob(manifest.source, repo: repo, hash: file.hash, size: file.size) {
                try receive(reader, file: file, into: nil, cancel: cancel)
                received[path] = .present
            } else {
                let target = staging.appending(path: "\(stagedByHash.count).part", directoryHint: .notDirectory)
                try receive(reader, file: file, into: target, cancel: cancel)
                stagedByHash[file.hash] = target
                received[path] = .staged(target)
            }
        }
        let missing = manifest.files.filter { received[$0.path] == nil }.map(\.path)
        if !missing.isEmpty {
            let more = missing.count > 1 ? " and \(missing.count - 1) more" : ""
            throw ArchiveError(.manifestMismatch, "the archive ends without \(missing[0])\(more) listed in its manifest (truncated?)")
        }

        let files = try manifest.files.map { file in
            VerifiedVersion.File(
                path: try HubPath(archived: file.path, repo: repo), size: file.size, hash: file.hash, kind: file.hashKind,
                sourceCommit: file.sourceCommit, content: received[file.path]!)
        }
        let (version, _) = try install(
            VerifiedVersion(source: manifest.source, repo: repo, revision: manifest.revision, commit: manifest.commit, files: files),
            for: "an import")
        logger.info(
            "import finished",
            metadata: ["source": "\(manifest.source.rawValue)", "repo": "\(repo)", "commit": "\(manifest.commit)", "bytes": "\(manifest.totalBytes)"])
        return ImportOutcome(version: version, files: files.count, bytes: manifest.totalBytes)
    }

    /// How an import's staging directory in `<data>/tmp` is named.
    static let importStagingPrefix = "import-"

    /// Removes the staging directories of imports that a previous daemon did not finish (it was killed mid-import):
    /// nothing would ever use them, and each can hold a whole model. Call at start-up, before any import begins.
    package func removeAbandonedImports() {
        let tmp = cache.dataDirectory.tmp
        let names = (try? FileManager.default.contentsOfDirectory(atPath: tmp.path)) ?? []
        for name in names where name.hasPrefix(Self.importStagingPrefix) {
            do {
                try FileManager.default.removeItem(at: tmp.appending(path: name, directoryHint: .isDirectory))
                logger.notice("removed the staging files of an unfinished import", metadata: ["directory": "\(tmp.path)/\(name)"])
            } catch {
                logger.warning(
                    "cannot remove the staging files of an unfinished import", metadata: ["directory": "\(tmp.path)/\(name)", "error": "\(error)"])
            }
        }
    }

    /// Reads and checks the first entry, which must be the manifest.
    private func readManifest(_ reader: ArchiveReader) throws -> ArchiveManifest {
        guard let first = try reader.next() else {
            throw ArchiveError(.badManifest, "the archive is empty: a model archive starts with \(ArchiveManifest.fileName)")
        }
        let path = try? Self.entryPath(first.path)
        guard path == ArchiveManifest.fileName, first.kind == .file, first.hardLinkTarget == nil else {
            throw ArchiveError(
                .badManifest, "the archive's first entry is \(first.path), not \(ArchiveManifest.fileName): is it an archive `modelctl export` wrote?"
            )
        }
        var data = Data()
        try reader.readData { bytes in
            data.append(contentsOf: bytes)
            if data.count > ArchiveManifest.maximumSize {
                throw ArchiveError(.badManifest, "\(ArchiveManifest.fileName) is larger than \(ArchiveManifest.maximumSize) bytes")
            }
        }
        return try ArchiveManifest.decode(data)
    }

    /// Streams the current entry's bytes into `target` (or nowhere, when the content is already kept), hashing
    /// them, and checks size and hash against the manifest. A file that runs past its size stops at once.
    private func receive(_ reader: ArchiveReader, file: ArchiveManifest.File, into target: URL?, cancel: CancellationFlag) throws {
        var fd: Int32 = -1
        if let target {
            fd = open(target.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw ArchiveError(storageError(errno, "cannot create \(target.path)")) }
        }
        defer { if fd >= 0 { close(fd) } }
        var hasher = ContentHasher(kind: file.hashKind, size: file.size)
        var total: Int64 = 0
        try reader.readData { bytes in
            if cancel.isCancelled { throw ArchiveError(.cancelled, "import was cancelled") }
            total += Int64(bytes.count)
            if total > file.size {
                throw ArchiveError(.manifestMismatch, "refusing \(file.path): it holds more than the \(file.size) bytes the manifest says")
            }
            hasher.update(bytes)
            if fd >= 0 { try FileDescriptorStream(fd: fd).write(bytes) }
        }
        guard total == file.size else {
            throw ArchiveError(.manifestMismatch, "refusing \(file.path): it is \(total) bytes in the archive, but the manifest says \(file.size)")
        }
        let digest = hasher.finalize()
        guard digest == file.hash else {
            throw ArchiveError(
                .checksumMismatch,
                "\(file.path) is corrupt: its \(file.hashKind.rawValue) is \(digest), the manifest says \(file.hash)")
        }
    }

    /// An entry's path, checked and normalised (`./` prefixes and trailing `/` dropped); nil for the archive root.
    /// - Throws: ``ArchiveError`` (`unsafeEntry`) for absolute paths, `..` and other names no model file can have.
    static func entryPath(_ raw: String) throws -> String? {
        var path = Substring(raw)
        if path.hasPrefix("/") { throw ArchiveError(.unsafeEntry, "refusing \(raw): it is an absolute path") }
        while path.hasPrefix("./") { path = path.dropFirst(2) }
        while path.hasSuffix("/") { path = path.dropLast() }
        if path.isEmpty || path == "." { return nil }
        if path.split(separator: "/", omittingEmptySubsequences: false).contains("..") {
            throw ArchiveError(.unsafeEntry, "refusing \(raw): it contains a .. component")
        }
        return try HubPath(archived: String(path), repo: "the archive").value
    }

    /// Where a symlink at `path` pointing to `target` lands, relative to the model root; nil when outside.
    static func resolveLink(_ target: String, from path: String) -> String? {
        guard !target.isEmpty, !target.hasPrefix("/") else { return nil }
        var components = path.split(separator: "/").dropLast().map(String.init)
        for component in target.split(separator: "/") {
            switch component {
            case ".": continue
            case "..":
                guard !components.isEmpty else { return nil }
                components.removeLast()
            default: components.append(String(component))
            }
        }
        return components.isEmpty ? nil : components.joined(separator: "/")
    }

    static func describe(mode: UInt32) -> String {
        switch mode & UInt32(S_IFMT) {
        case UInt32(S_IFCHR): "character device"
        case UInt32(S_IFBLK): "block device"
        case UInt32(S_IFIFO): "FIFO"
        case UInt32(S_IFSOCK): "socket"
        default: "special file (mode \(String(mode, radix: 8)))"
        }
    }
}
