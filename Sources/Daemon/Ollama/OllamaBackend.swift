import Catalog
import Foundation
import HTTPTypes
import Launchers
import Logging
import ModeldAPI
import NIOCore
import Synchronization

/// The one place the Ollama API reaches the daemon's run selection, shaped like the run scheduler's API:
/// ``acquire(_:keepAlive:prefer:logger:)`` a lease on a ready run (started on demand when none is), the
/// lease's ``OllamaLease/release()`` when the exchange ends, ``expiresAt(_:)`` and ``unload(_:)``.
///
/// Today it goes through the gateway's routing (``GatewayController/route(_:logger:prefer:)``) and its count of
/// requests in flight; what it cannot do through them is listed in docs/ollama-api.md (Keep-alive): a request's
/// `keep_alive` applies to a run it starts on demand and, when 0, unloads the run after the reply; on a run that
/// is already loaded, other values do not change the run's own keep-alive.
struct OllamaBackend: Sendable {
    let gateway: GatewayController

    /// Why a model cannot be served, as the scheduler will say it.
    enum Failure: Error {
        /// Not running and not pulled.
        case notFound(String)
        /// Known, but no run could be made ready (start failed, timed out, no room).
        case unavailable(String)
    }

    /// A ready run for `model`, counted busy until the lease is released.
    /// - Parameter keepAlive: the request's keep-alive: a run started on demand for it keeps it (`never` for a
    ///   negative one); 0 unloads the run once the lease is released and no other request is on it.
    /// - Throws: ``Failure``.
    func acquire(
        _ model: String, keepAlive: KeepAlive? = nil, prefer: @escaping (RunInfo) -> Bool = { _ in true }, logger: Logger
    ) async throws -> OllamaLease {
        var router = gateway
        if let keepAlive, keepAlive != .seconds(0) {
            router = GatewayController(
                supervisor: gateway.supervisor, catalog: gateway.catalog, store: gateway.store, startTimeout: gateway.startTimeout,
                onDemandKeepAlive: keepAlive, loadedRuns: gateway.loadedRuns, metrics: gateway.metrics)
        }
        let run: RunInfo
        do {
            run = try await router.route(model, logger: logger, prefer: prefer)
        } catch let error as OnDemandError {
            throw error.status == .notFound ? Failure.notFound(error.message) : Failure.unavailable(error.message)
        }
        gateway.outstanding.begin(run.runID)
        let unloadAfter = keepAlive == .seconds(0)
        return OllamaLease(run: run) { [self] in
            gateway.outstanding.end(run.runID)
            guard unloadAfter else { return }
            Task { await unloadIfIdle(run, logger: logger) }
        }
    }

    /// When a run will be unloaded if no request comes: its last use plus its keep-alive; nil when it stays
    /// loaded until stopped.
    func expiresAt(_ runID: String) -> Date? {
        guard let run = gateway.supervisor.snapshot.first(where: { $0.runID == runID }), let keepAlive = run.keepAlive else { return nil }
        return gateway.outstanding.lastUsedDate(runID).addingTimeInterval(TimeInterval(keepAlive))
    }

    /// Unloads every ready run of `model` that has no request in flight: a run started on demand is removed, an
    /// explicit one stopped (a later request starts it again).
    func unload(_ model: String, logger: Logger) async throws {
        for run in GatewayController.readyRuns(model, in: gateway.supervisor) {
            await unloadIfIdle(run, logger: logger)
        }
    }

    /// The loaded runs: starting or ready.
    var loadedRuns: [RunInfo] {
        gateway.supervisor.snapshot.filter { $0.state == .ready || $0.state == .starting }
    }

    private func unloadIfIdle(_ run: RunInfo, logger: Logger) async {
        guard gateway.outstanding.inFlight(run.runID) == 0 else { return }
        do {
            if run.onDemand {
                try await gateway.supervisor.remove(run.runID)
            } else {
                _ = try await gateway.supervisor.stop(run.runID)
            }
            logger.info("run unloaded", metadata: ["run": "\(run.runID)", "name": "\(run.name)", "why": "keep_alive 0 (Ollama API)"])
        } catch {
            logger.warning("cannot unload run \(run.name): \(error)")
        }
    }
}

/// A run lent to one exchange; ``release()`` once when the exchange ends (later calls do nothing).
final class OllamaLease: Sendable {
    let run: RunInfo
    private let onRelease: Mutex<(@Sendable () -> Void)?>

    init(run: RunInfo, onRelease: @escaping @Sendable () -> Void) {
        self.run = run
        self.onRelease = Mutex(onRelease)
    }

    func release() {
        let action = onRelease.withLock { action in
            defer { action = nil }
            return action
        }
        action?()
    }

    /// Sends a request to the run's engine and returns once the reply's head has arrived.
    /// - Throws: when the engine did not answer at all.
    func send(path: String, body: ByteBuffer, accept: String) async throws -> EngineReply {
        guard let endpoint = run.endpoint else { throw OllamaError(.serviceUnavailable, "run \(run.name) has no endpoint: it is \(run.state.rawValue)") }
        let request = try EngineRequest(endpoint: endpoint, path: path, headers: [("Content-Type", "application/json"), ("Accept", accept)], body: body)
        return try await EngineClient.shared.send(request)
    }

    deinit { release() }
}
