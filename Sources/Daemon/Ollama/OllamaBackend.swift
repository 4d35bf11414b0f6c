import Catalog
import Downloads
import Foundation
import HTTPTypes
import Hubs
import Launchers
import Logging
import ModelStore
import ModeldAPI
import NIOCore

/// The Ollama API's view of the run scheduler (``RunScheduler``): leases on ready runs (started on demand when
/// none is), a request's `keep_alive` applied to the run it uses, `expires_at`, and unloading a model.
struct OllamaBackend: Sendable {
    let scheduler: RunScheduler

    /// A ready run for `model`, counted busy until the lease is released.
    /// - Parameter keepAlive: the request's keep-alive, which becomes the run's: 0 unloads the run once its last
    ///   lease is released, a negative one keeps it loaded until stopped.
    /// - Throws: ``SchedulerError``.
    func acquire(
        _ model: String, keepAlive: KeepAlive? = nil, prefer: @escaping @Sendable (RunInfo) -> Bool = { _ in true }, logger: Logger
    ) async throws -> OllamaLease {
        OllamaLease(try await scheduler.acquire(model, keepAlive: keepAlive, prefer: prefer))
    }

    /// When a run will be unloaded if no request comes; nil when it stays loaded until stopped.
    func expiresAt(_ runID: String) async -> Date? {
        await scheduler.expiresAt(runID)
    }

    /// Unloads the runs of `model` now (a run with requests in flight when their last one ends); nothing when the
    /// model has no run.
    func unload(_ model: String, logger: Logger) async throws {
        do {
            try await scheduler.unload(model)
        } catch SchedulerError.notFound {
            return
        }
    }

    /// The loaded runs: starting or ready.
    var loadedRuns: [RunInfo] {
        scheduler.supervisor.snapshot.filter { $0.state == .ready || $0.state == .starting }
    }
}

/// A run lent to one exchange; ``release()`` once when the exchange ends (later calls do nothing).
struct OllamaLease: Sendable {
    let lease: RunLease
    var run: RunInfo { lease.run }

    init(_ lease: RunLease) { self.lease = lease }

    func release() { lease.release() }

    /// Sends a request to the run's engine and returns once the reply's head has arrived.
    /// - Throws: when the engine did not answer at all.
    func send(path: String, body: ByteBuffer, accept: String) async throws -> EngineReply {
        guard let endpoint = run.endpoint else {
            throw OllamaError(.serviceUnavailable, "run \(run.name) has no endpoint: it is \(run.state.rawValue)")
        }
        let request = try EngineRequest(
            endpoint: endpoint, path: path, headers: [("Content-Type", "application/json"), ("Accept", accept)], body: body)
        return try await EngineClient.shared.send(request)
    }
}
