import ServiceLifecycle

/// The supervisor as a ``Service``: reconciles at start, then on graceful shutdown stops every engine.
package struct SupervisorService: Service, CustomStringConvertible {
    package let supervisor: Supervisor

    package init(supervisor: Supervisor) {
        self.supervisor = supervisor
    }

    package var description: String { "Supervisor" }

    package func run() async throws {
        await supervisor.reconcile()
        // Cancellation and graceful shutdown both end the wait; either way the engines are stopped.
        try? await gracefulShutdown()
        await supervisor.shutdown()
    }
}
