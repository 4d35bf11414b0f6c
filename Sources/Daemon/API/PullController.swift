import Catalog
import Downloads
import Foundation
import Hubs
import Hummingbird
import Logging
import ModelStore
import ModeldAPI
import NIOCore

/// Pulling, listing, removing and verifying local model versions:
///
/// | route | what |
/// |---|---|
/// | `POST /api/v1/models/pull` | start or join a pull; NDJSON progress (`?stream=false`: wait, then one envelope) |
/// | `GET /api/v1/models/pulls` | running pulls, each as its current event |
/// | `GET /api/v1/models/pulls/{id}` | one pull's current event |
/// | `POST /api/v1/models/pulls/{id}/cancel` | cancel a pull |
/// | `GET /api/v1/models/local` | every local version |
/// | `POST /api/v1/models/remove` | remove a version (or every version) of a model |
/// | `POST /api/v1/models/verify` | re-hash a version (or every version) and report damage |
struct PullController {
    let catalog: ModelCatalog
    let pulls: PullService
    let events: PullEventSource

    func addRoutes(to group: RouterGroup<DaemonRequestContext>) {
        group.post("pull", use: pull)
        group.get("pulls", use: listPulls)
        group.get("pulls/:id", use: getPull)
        group.post("pulls/:id/cancel", use: cancelPull)
        group.get("local", use: local)
        group.post("remove", use: remove)
        group.post("verify", use: verify)
    }

    @Sendable func pull(_ request: Request, context: DaemonRequestContext) async throws -> Response {
        let body = try await request.decodeJSON(as: PullRequestBody.self, context: context)
        let resolved = try resolve(body.model, source: body.source)
        let job = pulls.pull(
            PullRequest(
                source: resolved.source, repo: resolved.repo, revision: body.revision, include: body.include ?? [],
                exclude: body.exclude ?? []))
        events.watch(job)
        context.logger.info("pull", metadata: ["repo": "\(resolved.repo)", "job": "\(job.id)", "source": "\(resolved.source.rawValue)"])

        if request.uri.queryParameters["stream"] == "false" {
            _ = try await job.result()
            return try Envelope(requestID: context.id, data: job.current).response(from: request, context: context)
        }
        let events = job.events()
        let encoder = WireJSON.encoder()
        return Response(
            status: .ok,
            headers: [.contentType: "application/x-ndjson", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                // A client that goes away only stops its own stream: the pull goes on for anyone else, and
                // resumes from disk if asked again. Cancel explicitly with POST .../pulls/{id}/cancel.
                for await event in events {
                    var line = try encoder.encode(event)
                    line.append(0x0A)
                    try await writer.write(ByteBuffer(bytes: line))
                }
                try await writer.finish(nil)
            })
    }

    @Sendable func listPulls(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<[PullEvent]> {
        Envelope(requestID: context.id, data: pulls.activeJobs().map(\.current).sorted { $0.jobID < $1.jobID })
    }

    @Sendable func getPull(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<PullEvent> {
        let id = try context.parameters.require("id")
        guard let job = pulls.job(id: id) else { throw APIError.notFound("no pull job \(id)") }
        return Envelope(requestID: context.id, data: job.current)
    }

    @Sendable func cancelPull(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<PullEvent> {
        let id = try context.parameters.require("id")
        guard let job = pulls.job(id: id) else { throw APIError.notFound("no pull job \(id)") }
        guard pulls.cancel(jobID: id) else { throw APIError(.conflict, "pull job \(id) has already finished") }
        return Envelope(requestID: context.id, data: job.current)
    }

    @Sendable func local(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<[LocalVersionInfo]> {
        Envelope(requestID: context.id, data: try await pulls.versions().map(LocalVersionInfo.init))
    }

    @Sendable func remove(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<RemoveResult> {
        let body = try await request.decodeJSON(as: VersionSelector.self, context: context)
        let (resolved, versions) = try await selectVersions(body)
        var removed: [LocalVersionInfo] = []
        for version in versions {
            try await pulls.remove(source: resolved.source, repo: version.model.repo, commit: version.version.commit)
            removed.append(LocalVersionInfo(version))
            events.bus.publish(.versionRemoved, LocalVersionInfo(version))
        }
        return Envelope(requestID: context.id, data: RemoveResult(removed: removed))
    }

    @Sendable func verify(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<[VerifyResult]> {
        let body = try await request.decodeJSON(as: VersionSelector.self, context: context)
        let (resolved, versions) = try await selectVersions(body)
        var results: [VerifyResult] = []
        for version in versions {
            let report = try await pulls.verify(source: resolved.source, repo: version.model.repo, commit: version.version.commit)
            results.append(
                VerifyResult(
                    repo: report.repo, source: report.source.rawValue, commit: report.commit, filesChecked: report.filesChecked,
                    bytesChecked: report.bytesChecked, intact: report.isIntact, damage: report.damage.map(\.description)))
        }
        return Envelope(requestID: context.id, data: results)
    }

    // MARK: Helpers

    private func resolve(_ model: String, source: String?) throws -> ResolvedModel {
        try ModelsController.resolve(catalog, model: model, source: ModelsController.source(source))
    }

    /// The versions a selector names: one (by commit, prefix or revision) or all of the model's.
    private func selectVersions(_ body: VersionSelector) async throws -> (ResolvedModel, [LocalVersion]) {
        let resolved = try resolve(body.model, source: body.source)
        if let revision = body.revision, !revision.isEmpty {
            return (resolved, [try await pulls.findVersion(source: resolved.source, repo: resolved.repo, commit: revision)])
        }
        let all = try await pulls.store.versions(source: resolved.source.rawValue, repo: resolved.repo)
        guard !all.isEmpty else {
            throw APIError.notFound("no local version of \(resolved.repo) (\(resolved.source.rawValue)); `modelctl list` shows what is stored")
        }
        return (resolved, all)
    }
}

extension PullEvent: ResponseEncodable {}
