import Downloads
import Foundation
import Hummingbird
import Launchers
import ModelStore
import ModeldAPI

/// `GET /api/v1/status`: the version, the data directory's use and free space, runs by state, local versions,
/// tokens served and uptime, in one small reply for a dashboard (the web console's Status view).
struct StatusController {
    let daemon: DaemonContext

    func addRoutes(to group: RouterGroup<DaemonRequestContext>) {
        group.get("status", use: status)
    }

    @Sendable func status(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<DaemonStatus> {
        let versions = try await daemon.store.localVersions()
        var runs = Dictionary(uniqueKeysWithValues: RunState.allCases.map { ($0.rawValue, 0) })
        for run in daemon.supervisor.snapshot { runs[run.state.rawValue, default: 0] += 1 }
        let root = daemon.configuration.dataDirectory.root
        let space = fileSystemSpace(root)
        let tokens = daemon.metrics.tokensServed
        return Envelope(
            requestID: context.id,
            data: DaemonStatus(
                version: modeldVersion, dataDir: root.path, dataDirBytes: versions.reduce(0) { $0 + $1.version.totalBytes },
                freeBytes: space?.available, totalBytes: space?.total, runs: runs, versions: versions.count,
                tokensServed: .init(prompt: tokens.prompt, completion: tokens.completion),
                uptimeSeconds: Int((ContinuousClock.now - daemon.startedAt).components.seconds)))
    }
}
