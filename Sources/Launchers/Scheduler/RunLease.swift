import ModeldAPI
import Synchronization

/// A request's hold on a ready run, from ``RunScheduler``: while any lease on a run is held, the run is neither
/// evicted nor unloaded when idle, and it counts as busy for the least-busy choice. ``release()`` when the
/// exchange with the engine is over; a lease dropped without it is released then.
package final class RunLease: Sendable {
    /// The run, as it was when the lease was taken.
    package let run: RunInfo
    private let scheduler: RunScheduler
    private let released = Atomic(false)

    init(run: RunInfo, scheduler: RunScheduler) {
        self.run = run
        self.scheduler = scheduler
    }

    /// Ends the lease: the run's last use is now, and its keep-alive starts when no other lease holds it.
    /// Only the first call counts.
    package func release() {
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        scheduler.ended(run.runID)
    }

    deinit { release() }
}

/// Why ``RunScheduler`` has no run for a request.
package enum SchedulerError: Error, Sendable, CustomStringConvertible {
    /// Nothing answers to the name: no run, and no pulled model to start (404).
    case notFound(String)
    /// A run exists or could, but none can serve now: the loaded-runs limit, a failed or slow start (503).
    case unavailable(String)

    /// One sentence for the client.
    package var message: String {
        switch self {
        case .notFound(let message), .unavailable(let message): message
        }
    }

    package var description: String { message }
}

extension SchedulerError: APIErrorConvertible {
    /// 404 when nothing answers to the model, else 503; the request's field at fault is `model`.
    package var apiError: APIError {
        switch self {
        case .notFound(let message): APIError(status: 404, code: "modelNotFound", message: message, field: "model")
        case .unavailable(let message): APIError(status: 503, code: "modelUnavailable", message: message, field: "model")
        }
    }
}
