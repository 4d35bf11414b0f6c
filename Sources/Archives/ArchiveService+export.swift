import Catalog
import Downloads
import Foundation
import Hubs
import Logging
import ModelStore
import ModeldAPI

/// What an export will write: the version and its manifest (each file's bytes are its blob in the cache).
package struct ExportPlan: Sendable {
    package var version: LocalVersion
    package var manifest: ArchiveManifest

    /// A file name for the archive: `owner--name-<commit prefix>.<extension>`.
    package func suggestedFileName(format: ArchiveFormat) -> String {
        "\(manifest.repo.replacingOccurrences(of: "/", with: "--"))-\(manifest.commit.prefix(12)).\(format.fileExtension)"
    }
}

extension ArchiveService {
    /// Finds a ready version to export.
    /// - Parameter commit: a full commit, a unique prefix, or the revision it was pulled as; nil means the newest
    ///   ready version.
    /// - Throws: ``ArchiveError`` (`notFound`, `notReady`).
    package func exportPlan(source: ModelSource, repo: String, commit: String?) async throws -> ExportPlan {
        let found: LocalVersion
        do {
            if let commit, !commit.isEmpty {
                found = try await pulls.findVersion(source: source, repo: repo, commit: commit)
            } else {
                let versions = try await store.versions(source: source.rawValue, repo: repo)
                guard let newest = versions.first(where: { $0.version.state == .ready }) ?? versions.first else {
                    throw ArchiveError(.notFound, "no local version of \(repo) (\(source.rawValue)); `modelctl list` shows what is stored")
                }
                found = newest
            }
        } catch let error as PullError {
            throw ArchiveError(error)
        }
        guard found.version.state == .ready else {
            throw ArchiveError(
                .notReady,
                "\(repo)@\(found.version.commit.prefix(12)) is \(found.version.state.rawValue), not ready: pull it again (or `modelctl verify` it) before exporting"
            )
        }
        let records = try await store.files(versionID: found.version.id!)
        var files: [ArchiveManifest.File] = []
        for record in records {
            guard let kind = HashKind(rawValue: record.hashKind) else {
                throw ArchiveError(.storage, "\(record.path) of \(repo) has an unknown hash kind \(record.hashKind)")
            }
            files.append(.init(path: record.path, size: record.size, hash: record.hash, hashKind: kind, sourceCommit: record.sourceCommit))
        }
        let manifest = ArchiveManifest(
            source: source, repo: repo, revision: found.version.requestedRevision, commit: found.version.commit, files: files)
        return ExportPlan(version: found, manifest: manifest)
    }

    /// Writes the archive: the manifest first, then every file straight from its blob, hashed on the way so a
    /// blob damaged on disk fails the export instead of producing an archive that fails to import.
    /// In tar archives a file with the same content as an earlier one is a hard link to it.
    /// Blocking: call it from a dedicated thread.
    /// - Throws: ``ArchiveError``, or the output's error (``ChunkPipe/Abandoned`` when the client went away).
    package func writeArchive(_ plan: ExportPlan, format: ArchiveFormat, to output: any ArchiveOutput, cancel: CancellationFlag) throws {
        let writer = try ArchiveWriter(format: format, output: output)
        // Every entry carries the time the version became ready, so that exporting a version twice gives the same
        // bytes (an archive can be checked against another by its hash).
        let modified = plan.version.version.readyAt ?? plan.version.version.createdAt
        let manifestData = try plan.manifest.encoded()
        try writer.addFile(path: ArchiveManifest.fileName, size: Int64(manifestData.count), modified: modified) { write in
            try manifestData.withUnsafeBytes { try write($0) }
        }
        var firstPathByHash: [String: String] = [:]
        let repo = plan.manifest.repo
        for file in plan.manifest.files {
            if cancel.isCancelled { throw ArchiveError(.cancelled, "export of \(repo) was cancelled") }
            if format != .zip, let first = firstPathByHash[file.hash] {
                try writer.addHardLink(path: file.path, target: first, modified: modified)
                continue
            }
            firstPathByHash[file.hash] = file.path
            let blob = cache.blobURL(plan.manifest.source, repo: repo, hash: file.hash)
            let fd = open(blob.path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                throw ArchiveError(
                    .notReady,
                    "\(file.path) of \(repo) is missing from the cache (\(String(cString: strerror(errno)))): run `modelctl verify` and pull it again"
                )
            }
            defer { close(fd) }
            var hasher = ContentHasher(kind: file.hashKind, size: file.size)
            try writer.addFile(path: file.path, size: file.size, modified: modified) { write in
                let chunk = 4 << 20
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
                defer { buffer.deallocate() }
                var total: Int64 = 0
                while total < file.size {
                    if cancel.isCancelled { throw ArchiveError(.cancelled, "export of \(repo) was cancelled") }
                    let want = Int(min(Int64(chunk), file.size - total))
                    let got = read(fd, buffer.baseAddress, want)
                    if got < 0 && errno == EINTR { continue }
                    guard got > 0 else {
                        throw ArchiveError(
                            .notReady, "\(file.path) of \(repo) is shorter on disk than recorded: run `modelctl verify` and pull it again")
                    }
                    let bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<got])
                    hasher.update(bytes)
                    try write(bytes)
                    total += Int64(got)
                }
            }
            let digest = hasher.finalize()
            guard digest == file.hash else {
                throw ArchiveError(
                    .notReady,
                    "\(file.path) of \(repo) is damaged on disk (\(file.hashKind.rawValue) \(digest)): run `modelctl verify` and pull it again")
            }
        }
        try writer.close()
    }
}

extension ArchiveService {
    /// ``writeArchive(_:format:to:cancel:)`` on a dedicated thread; cancelling the calling task stops it.
    package func exportArchive(_ plan: ExportPlan, format: ArchiveFormat, to output: any ArchiveOutput) async throws {
        let flag = CancellationFlag()
        try await onCancellableThread(flag) { try self.writeArchive(plan, format: format, to: output, cancel: flag) }
        logger.info(
            "export finished",
            metadata: ["repo": "\(plan.manifest.repo)", "commit": "\(plan.manifest.commit)", "format": "\(format.rawValue)"])
    }
}
