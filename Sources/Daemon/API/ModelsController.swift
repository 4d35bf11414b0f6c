import Catalog
import Foundation
import Hummingbird
import ModeldAPI

/// `/api/v1/models`: the catalog with what this host has of each model.
struct ModelsController<Context: RequestContext> {
    let catalog: ModelCatalog
    let store: Store

    func addRoutes(to group: RouterGroup<Context>) {
        group.get(use: list)
    }

    @Sendable func list(_ request: Request, context: Context) async throws -> Envelope<[CatalogModelInfo]> {
        let local = try store.localVersions()
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
                        modelscopeID: size.modelscopeID, ollamaName: size.ollamaName,
                        state: versions.first?.state ?? "not_pulled", versions: versions)
                },
                quantizations: entry.quantizations, engines: entry.engines, formats: entry.formats,
                defaultEngine: entry.defaultEngine)
        }
    }
}

extension LocalVersionInfo {
    init(_ item: LocalVersion) {
        self.init(
            repo: item.model.repo, source: item.model.source, revision: item.version.requestedRevision,
            commit: item.version.commit, sizeBytes: item.version.totalBytes, state: item.version.state.rawValue,
            path: item.version.path, error: item.version.error, createdAt: item.version.createdAt,
            readyAt: item.version.readyAt)
    }
}
