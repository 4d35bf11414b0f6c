import Downloads
import Hubs
import Logging
import ModelStore

/// Moves models in and out of the cache without a hub: exports a version as an archive, imports an archive, and
/// adopts an existing Hugging Face cache or model directory. Versions are placed through the pull service's
/// ``ModelCache`` under its repository claims, so none of these runs beside a pull, a removal or another of them
/// on the same repository.
///
/// ```swift
/// let archives = ArchiveService(pulls: pulls)
/// let plan = try await archives.exportPlan(source: .huggingface, repo: "acme/tiny", commit: nil)
/// try await archives.exportArchive(plan, format: .tarZst, to: output)
/// let outcome = try await archives.importArchive(from: input)
/// let adopted = try await archives.adoptHuggingFaceCache(at: URL(filePath: "/home/me/.cache/huggingface/hub"))
/// ```
package struct ArchiveService: Sendable {
    package let pulls: PullService

    package init(pulls: PullService) {
        self.pulls = pulls
    }

    var cache: ModelCache { pulls.cache }
    var store: Store { pulls.store }
    /// The pull service's logger: exports, imports and adoptions are logged beside the pulls.
    var logger: Logger { pulls.logger }

    /// Places a verified version in the cache while holding its repository (``PullService/claiming(source:repo:for:_:)``).
    /// Blocking: call it from a dedicated thread.
    /// - Parameter what: the operation, as a refusal of another one names it (`an import`).
    /// - Throws: ``ArchiveError``, or the store's errors.
    func install(_ version: VerifiedVersion, for what: String) throws -> (LocalVersion, InstallCounts) {
        do {
            return try pulls.claiming(source: version.source, repo: version.repo, for: what) { try cache.install(version) }
        } catch let error as PullError {
            throw ArchiveError(error)
        }
    }
}
