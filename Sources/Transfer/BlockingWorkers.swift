import FoundationEssentials
import Glibc
import Synchronization

/// Runs blocking work (libcurl transfers, file parsing) off Swift's cooperative pool and resumes the caller with
/// its result, on a thread of ``BlockingWorkers``.
package func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        BlockingWorkers.shared.run { continuation.resume(with: Result { try body() }) }
    }
}

/// Long-lived threads for blocking work: a thread whose job has ended waits for the next one (up to `idleLimit`
/// of them wait), so a job does not pay for creating a thread. A job never waits for a free thread: with none
/// idle, a new one starts, so long jobs (a streamed reply) cannot hold up short ones.
package final class BlockingWorkers: @unchecked Sendable {
    package static let shared = BlockingWorkers()
    private let condition = ThreadCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var idle = 0
    private let idleLimit = 32

    /// Runs `job` on a worker thread and returns at once.
    package func run(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        let startThread = jobs.count > idle
        if !startThread { condition.signal() }
        condition.unlock()
        if startThread {
            Transfer.startThread(stackSize: 4 << 20) { [self] in work() }
        }
    }

    private func work() {
        condition.lock()
        while true {
            if !jobs.isEmpty {
                let job = jobs.removeFirst()
                condition.unlock()
                job()
                condition.lock()
                continue
            }
            guard idle < idleLimit else { break }
            idle += 1
            condition.wait()
            idle -= 1
        }
        condition.unlock()
    }
}

/// Idle handles (libcurl easy handles) kept between uses, so their connections are reused.
package final class HandlePool<Handle: Sendable>: Sendable {
    private let idle = Mutex<[Handle]>([])
    private let capacity: Int
    private let make: @Sendable () throws -> Handle

    /// - Parameter capacity: idle handles kept at most; beyond it a returned handle is dropped (and closed).
    package init(capacity: Int = 64, make: @escaping @Sendable () throws -> Handle) {
        self.capacity = capacity
        self.make = make
    }

    /// An idle handle, or a new one.
    package func take() throws -> Handle {
        try idle.withLock { $0.popLast() } ?? make()
    }

    /// Takes a handle back for reuse.
    package func give(_ handle: Handle) {
        idle.withLock { idle in
            if idle.count < capacity { idle.append(handle) }
        }
    }

    /// Lends a handle to `body` on the calling thread and takes it back afterwards.
    package func withHandle<T>(_ body: (Handle) throws -> T) throws -> T {
        let handle = try take()
        defer { give(handle) }
        return try body(handle)
    }
}
