import Archives
import Catalog
import Downloads
import Foundation
import Hubs
import Hummingbird
import Logging
import ModelStore
import ModeldAPI
import NIOCore

/// Moving models between hosts without a hub:
///
/// | route | what |
/// |---|---|
/// | `GET /api/v1/models/{ref}/export?source=&revision=&format=` | the version as an archive, streamed (default `tar.zst`) |
/// | `POST /api/v1/models/import` | an archive as the request body, streamed; registers the version it holds |
/// | `POST /api/v1/models/adopt` | `{path, kind: hf-cache\|dir, name?, revision?}`: registers models already on this host |
struct ArchiveController {
    let catalog: ModelCatalog
    let archives: ArchiveService
    let events: EventBus

    func addRoutes(to group: RouterGroup<DaemonRequestContext>) {
        group.post("import", use: importArchive)
        group.post("adopt", use: adopt)
        group.get(":ref/export") { request, context in
            try await export(request, context: context, ref: try context.parameters.require("ref"))
        }
        group.get(":ref/:name/export") { request, context in
            try await export(
                request, context: context, ref: "\(try context.parameters.require("ref"))/\(try context.parameters.require("name"))")
        }
    }

    /// Streams the archive: blobs go through libarchive into the response a few chunks at a time. Errors found
    /// before the first byte (no such version, not ready, bad format) are envelopes; a failure later cuts the
    /// reply short, and the log says why.
    func export(_ request: Request, context: DaemonRequestContext, ref rawRef: String) async throws -> Response {
        let ref = rawRef.removingPercentEncoding ?? rawRef
        let query = request.uri.queryParameters
        let resolved = try ModelsController.resolve(catalog, model: ref, source: ModelsController.source(query["source"].map(String.init)))
        let name = query["format"].map(String.init) ?? ArchiveFormat.tarZst.rawValue
        guard let format = ArchiveFormat(name: name) else {
            throw APIError.badRequest("unknown archive format \"\(name)\" (use \(ArchiveFormat.names))")
        }
        let archives = self.archives
        let revision = query["revision"].map(String.init)
        let plan = try await Self.asArchiveError { try await archives.exportPlan(source: resolved.source, repo: resolved.repo, commit: revision) }
        context.logger.info("export", metadata: ["repo": "\(resolved.repo)", "commit": "\(plan.manifest.commit)", "format": "\(format.rawValue)"])
        let logger = context.logger
        return Response(
            status: .ok,
            headers: [
                .contentType: format.contentType,
                .contentDisposition: "attachment; filename=\"\(plan.suggestedFileName(format: format))\"",
                .cacheControl: "no-cache",
            ],
            body: ResponseBody { writer in
                let pipe = ChunkPipe(capacity: 8)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        do {
                            try await archives.exportArchive(plan, format: format, to: pipe)
                            pipe.finish()
                        } catch {
                            pipe.finish(throwing: error)
                        }
                    }
                    do {
                        while let chunk = try await pipe.receive() {
                            try await writer.write(ByteBuffer(bytes: chunk))
                        }
                        try await writer.finish(nil)
                    } catch {
                        pipe.abandon()
                        logger.error("export failed", metadata: ["repo": "\(plan.manifest.repo)", "error": "\(error)"])
                        throw error
                    }
                    try await group.waitForAll()
                }
            })
    }

    /// Feeds the request body to the importer as it arrives. When the importer refuses the archive early, the
    /// rest of the body is read and dropped, so the client can read the error.
    @Sendable func importArchive(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<ImportResult> {
        let archives = self.archives
        let pipe = ChunkPipe(capacity: 16)
        let outcome = try await Self.asArchiveError {
            try await withThrowingTaskGroup(of: ImportOutcome.self) { group in
                group.addTask {
                    defer { pipe.abandon() }
                    return try await archives.importArchive(from: ChunkPipeInput(pipe))
                }
                var feeding = true
                do {
                    for try await buffer in request.body {
                        guard feeding else { continue }
                        do {
                            try await pipe.send(Data(buffer.readableBytesView))
                        } catch is ChunkPipe.Abandoned {
                            feeding = false
                        }
                    }
                    pipe.finish()
                } catch {
                    pipe.finish(throwing: ArchiveError(.unreadable, "the upload broke off: \(error)"))
                }
                return try await group.next()!
            }
        }
        events.publish(.versionAdded, LocalVersionInfo(outcome.version))
        context.logger.info(
            "import", metadata: ["repo": "\(outcome.version.model.repo)", "commit": "\(outcome.version.version.commit)", "files": "\(outcome.files)"])
        return Envelope(
            requestID: context.id, data: ImportResult(version: LocalVersionInfo(outcome.version), files: outcome.files, bytes: outcome.bytes))
    }

    @Sendable func adopt(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<AdoptResult> {
        let body = try await request.decodeJSON(as: AdoptRequest.self, context: context)
        guard body.path.hasPrefix("/") else {
            throw APIError.badRequest("field \"path\" must be an absolute path on the daemon's host")
        }
        let url = URL(filePath: body.path, directoryHint: .isDirectory)
        let outcome: AdoptOutcome
        switch body.kind {
        case "hf-cache":
            outcome = try await Self.asArchiveError { try await archives.adoptHuggingFaceCache(at: url) }
        case "dir":
            guard let name = body.name, !name.isEmpty else {
                throw APIError.badRequest("missing field \"name\": a directory is registered as a repository id owner/name")
            }
            outcome = try await Self.asArchiveError { try await archives.adoptDirectory(at: url, repo: name, revision: body.revision) }
        default:
            throw APIError.badRequest("field \"kind\" must be hf-cache or dir, not \"\(body.kind)\"")
        }
        for version in outcome.adopted { events.publish(.versionAdded, LocalVersionInfo(version)) }
        context.logger.info("adopt", metadata: ["path": "\(body.path)", "kind": "\(body.kind)", "versions": "\(outcome.adopted.count)"])
        return Envelope(
            requestID: context.id,
            data: AdoptResult(
                adopted: outcome.adopted.map(LocalVersionInfo.init), skipped: outcome.skipped.map { .init(path: $0.path, reason: $0.reason) },
                linkedBytes: outcome.linkedBytes, copiedBytes: outcome.copiedBytes))
    }

    /// Runs `body`, reporting a ``PullError`` from the cache and store helpers the archives share with pulls as the
    /// ``ArchiveError`` it is here (an unsafe path is the archive's fault, not a hub's).
    static func asArchiveError<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as PullError {
            throw ArchiveError(error)
        }
    }
}
