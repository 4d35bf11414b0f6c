import Foundation
import Synchronization

/// A flag that blocking transfer threads poll, set when the async task that owns them is cancelled.
package final class CancellationFlag: Sendable {
    private let flag = Atomic<Bool>(false)

    package init() {}

    package var isCancelled: Bool { flag.load(ordering: .relaxed) }

    package func cancel() { flag.store(true, ordering: .relaxed) }

    /// Sleeps on the calling (non-pool) thread, waking early when cancelled.
    /// - Returns: false when cancelled.
    @discardableResult
    package func sleep(for duration: Duration) -> Bool {
        let deadline = ContinuousClock.now + duration
        while ContinuousClock.now < deadline {
            if isCancelled { return false }
            let left = deadline - ContinuousClock.now
            let step = min(left, .milliseconds(50))
            let micros = max(0, step.components.seconds * 1_000_000 + step.components.attoseconds / 1_000_000_000_000)
            usleep(UInt32(micros))
        }
        return !isCancelled
    }
}

/// Runs blocking work on a dedicated thread, setting `flag` if the calling task is cancelled meanwhile.
package func onCancellableThread<T: Sendable>(
    _ flag: CancellationFlag, _ body: @escaping @Sendable () throws -> T
) async throws -> T {
    try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let thread = Thread {
                continuation.resume(with: Result { try body() })
            }
            thread.name = "modeld.download"
            thread.stackSize = 1 << 20
            thread.start()
        }
    } onCancel: {
        flag.cancel()
    }
}
