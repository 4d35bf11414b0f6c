import ModelStore
import ServiceLifecycle

/// The supervisor as a ``Service``: reconciles the recorded runs at start, then on graceful shutdown stops every
/// engine. The daemon runs it with hooks for systemd (ready once reconciled; more time to stop the engines).
package struct SupervisorService: Service, CustomStringConvertible {
    package let supervisor: Supervisor
    /// Called once the recorded runs are reconciled.
    let reconciled: @Sendable () async -> Void
    /// Called when shutdown begins with live runs: how many, and the longest stop grace among their engines.
    let stopping: @Sendable (_ runs: Int, _ grace: Duration) -> Void

    package init(
        supervisor: Supervisor, reconciled: @escaping @Sendable () async -> Void = {},
        stopping: @escaping @Sendable (_ runs: Int, _ grace: Duration) -> Void = { _, _ in }
    ) {
        self.supervisor = supervisor
        self.reconciled = reconciled
        self.stopping = stopping
    }

    package var description: String { "Supervisor" }

    package func run() async throws {
        await supervisor.reconcile()
        await reconciled()
        // Cancellation and graceful shutdown both end the wait; either way the engines are stopped.
        try? await gracefulShutdown()
        let running = await supervisor.list().filter { $0.state.isLoaded }
        if !running.isEmpty {
            let supervision = await supervisor.configuration
            stopping(running.count, running.map { supervision.settings(for: $0.engine).stopGrace }.max() ?? .seconds(10))
        }
        await supervisor.shutdown()
    }
}
