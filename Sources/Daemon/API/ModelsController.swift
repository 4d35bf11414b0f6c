import Catalog
import Foundation
import Hummingbird
import ModelStore
import ModeldAPI

/// `/api/v1/models`: the catalog with what this host has of each model.
struct ModelsController {
    typealias Context = DaemonRequestContext
    let catalog: ModelCatalog
    let store: Store

    func addRoutes(to group: RouterGroup<Context>) {
        group.get(use: list)
        group.post("resolve", use: resolve)
    }

    /// Resolves a catalog ref or repository id to a hub repository.
    @Sendable func resolve(_ request: Request, context: Context) async throws -> Envelope<ResolveResponse> {
        let body = try await request.decodeJSON(as: ResolveRequest.self, context: context)
        let source = try Self.source(body.source)
        let resolved = try Self.resolve(catalog, model: body.model, source: source, missingSizeIsNotFound: true)
        return Envelope(
            requestID: context.id,
            data: ResolveResponse(
                model: body.model, source: source.rawValue, repo: resolved.repo,
                catalogRef: resolved.entry.flatMap { entry in resolved.size.map { "\(entry.id):\($0.size)" } },
                defaultEngine: resolved.entry?.defaultEngine))
    }

    /// Resolves a model reference for a request: an unknown catalog id is a 404, any other bad reference a 400
    /// (with `missingSizeIsNotFound`, an unknown size of a known model, or none on the hub, is a 404 too).
    static func resolve(
        _ catalog: ModelCatalog, model: String, source: ModelSource, missingSizeIsNotFound: Bool = false
    ) throws -> ResolvedModel {
        do {
            return try catalog.resolve(ModelRef(parsing: model), source: source)
        } catch let error as ModelRefError where missingSizeIsNotFound && (error.code == .unknownSize || error.code == .notOnHub) {
            throw APIError(status: 404, code: error.code.rawValue, message: error.description, field: "model")
        }
    }

    /// Parses the optional `source` field of a request.
    static func source(_ text: String?) throws -> ModelSource {
        guard let text else { return .huggingface }
        guard let source = ModelSource(rawValue: text) else {
            throw APIError.badRequest("unknown source \"\(text)\" (use huggingface or modelscope)")
        }
        return source
    }

    @Sendable func list(_ request: Request, context: Context) async throws -> Envelope<[CatalogModelInfo]> {
        let local = try await store.localVersions()
        return Envelope(requestID: context.id, data: Self.catalogWithState(catalog, local: local))
    }

    /// Joins catalog entries with local versions by repository (either hub).
    static func catalogWithState(_ catalog: ModelCatalog, local: [LocalVersion]) -> [CatalogModelInfo] {
        catalog.entries.map { entry in
            CatalogModelInfo(
                id: entry.id, name: entry.name, description: entry.description, officialURL: entry.officialURL,
                sizes: entry.sizes.map { size in
                    let versions = local.filter { item in
                        let repo = item.model.repo.lowercased()
                        return (item.model.source == ModelSource.huggingface.rawValue && repo == size.hfRepo.lowercased())
                            || (item.model.source == ModelSource.modelscope.rawValue && repo == size.modelscopeID?.lowercased())
                    }.map(LocalVersionInfo.init)
                    return CatalogSizeInfo(
                        size: size.size, ref: "\(entry.id):\(size.size)", hfRepo: size.hfRepo,
                        modelscopeID: size.modelscopeID, ollamaName: size.ollamaName, ggufRepo: size.ggufRepo,
                        state: versions.first?.state ?? "not_pulled", versions: versions)
                },
                quantizations: entry.quantizations, engines: entry.engines, formats: entry.formats,
                defaultEngine: entry.defaultEngine)
        }
    }
}

extension LocalVersionInfo {
    /// The version as the API reports it; a ready one with the format and type of its weights, read from its files.
    init(_ item: LocalVersion) {
        self.init(
            repo: item.model.repo, source: item.model.source, revision: item.version.requestedRevision,
            commit: item.version.commit, sizeBytes: item.version.totalBytes, state: item.version.state.rawValue,
            path: item.version.path, error: item.version.error, createdAt: item.version.createdAt,
            readyAt: item.version.readyAt)
        if item.version.state == .ready, let path = item.version.path {
            let weights = OllamaModelFacts.weights(path: path)
            format = weights.format.isEmpty ? nil : weights.format
            let types = weights.quantizations.filter { !$0.isEmpty }.map { $0.lowercased() }
            quantization = types.isEmpty ? nil : types.joined(separator: ",")
        }
    }
}
