import Hummingbird
import Launchers
import NIOCore

/// `GET /metrics`: every series in the Prometheus text format. Once API keys exist it needs one, of either
/// scope (see ``AuthMiddleware``), so a scraper can use an inference key.
struct MetricsController {
    let metrics: DaemonMetrics
    let supervisor: Supervisor

    func addRoutes(to router: Router<DaemonRequestContext>) {
        router.get("/metrics", use: scrape)
    }

    @Sendable func scrape(_ request: Request, context: DaemonRequestContext) async throws -> Response {
        // Run states are read when scraped rather than tracked on every change.
        metrics.updateRuns(supervisor.snapshot)
        return Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: metrics.exposition())))
    }
}
