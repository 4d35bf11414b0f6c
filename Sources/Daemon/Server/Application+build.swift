import Catalog
import Foundation
import Hummingbird
import Launchers
import Logging
import ModeldAPI

/// Everything the HTTP layer needs, built once at start-up.
struct DaemonContext: Sendable {
    var configuration: DaemonConfiguration
    var catalog: ModelCatalog
    var store: Store
    var pulls: PullService
    var supervisor: Supervisor
    var logger: Logger
}

/// Builds the daemon's router: every route of the management API.
func buildRouter(_ daemon: DaemonContext) -> Router<DaemonRequestContext> {
    let router = Router(context: DaemonRequestContext.self)
    router.add(middleware: RequestIDHeaderMiddleware())
    router.add(middleware: EnvelopeErrorMiddleware())

    router.get("/health") { _, _ in
        HealthInfo(status: "ok", version: modeldVersion)
    }
    let api = router.group("api/v1")
    let models = api.group("models")
    ModelsController(catalog: daemon.catalog, store: daemon.store).addRoutes(to: models)
    PullController(catalog: daemon.catalog, pulls: daemon.pulls).addRoutes(to: models)
    RunsController(catalog: daemon.catalog, store: daemon.store, supervisor: daemon.supervisor).addRoutes(to: models)
    return router
}

/// The router as a Hummingbird application on a TCP address, for tests that drive it with
/// HummingbirdTesting. The daemon itself serves the same router through ``HTTPListener``.
/// - Parameter port: overrides the configured port (tests pass 0 for an ephemeral one).
func buildApplication(_ daemon: DaemonContext, port: Int? = nil) -> some ApplicationProtocol {
    Application(
        router: buildRouter(daemon),
        configuration: .init(
            address: .hostname(daemon.configuration.listen.host, port: port ?? daemon.configuration.listen.port),
            serverName: "modeld/\(modeldVersion)"),
        logger: daemon.logger)
}

extension HealthInfo: ResponseEncodable {}

/// Echoes the request id in `X-Request-Id`, so a client can quote it when reporting a problem.
struct RequestIDHeaderMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[.init("X-Request-Id")!] = context.id
        return response
    }
}
