import Foundation

/// Continuous batching on one dedicated thread: every step runs one forward pass over all running
/// sequences (prefilling new ones chunk by chunk, decoding one token for each of the others), and new
/// requests join between steps.
///
/// Requests talk to the loop through ``SchedulerJob``s: tokens come back through the job's stream; a
/// cancelled job (its client went away) leaves the batch before the next step. Other work on the model
/// (embeddings) runs on the same thread between steps through ``perform(_:)``, since the model is driven by one
/// thread at a time.
package final class BatchScheduler: @unchecked Sendable {
    package let generator: Generator
    /// Sequences decoded together at most; later ones wait.
    package let maxBatch: Int

    private let condition = NSCondition()
    private var waiting: [SchedulerJob] = []
    private var tasks: [@Sendable () -> Void] = []
    private var stopped = false
    private var thread: Thread?

    package init(generator: Generator, maxBatch: Int = 16) {
        self.generator = generator
        self.maxBatch = max(1, maxBatch)
    }

    /// Starts the loop thread.
    package func start() {
        condition.lock()
        defer { condition.unlock() }
        guard thread == nil else { return }
        let thread = Thread { [self] in loop() }
        thread.name = "modeld-engine-scheduler"
        thread.stackSize = 8 << 20
        self.thread = thread
        thread.start()
    }

    /// Stops the loop; running jobs end with a cancellation error.
    package func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    /// Queues a generation; its tokens arrive on the job's stream.
    package func submit(_ generation: Generation) -> SchedulerJob {
        let job = SchedulerJob(generation: generation)
        condition.lock()
        if stopped {
            condition.unlock()
            job.fail(CancellationError())
            return job
        }
        waiting.append(job)
        condition.signal()
        condition.unlock()
        return job
    }

    /// Runs `work` on the loop thread between two steps and returns its result.
    /// - Throws: what `work` throws, or `CancellationError` once the scheduler is stopped.
    package func perform<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            condition.lock()
            if stopped {
                condition.unlock()
                continuation.resume(throwing: CancellationError())
                return
            }
            tasks.append { continuation.resume(with: Result { try work() }) }
            condition.signal()
            condition.unlock()
        }
    }

    private func loop() {
        var running: [SchedulerJob] = []
        while true {
            condition.lock()
            while waiting.isEmpty && running.isEmpty && tasks.isEmpty && !stopped { condition.wait() }
            let work = tasks
            tasks = []
            if stopped {
                let all = running + waiting
                waiting = []
                condition.unlock()
                for job in all { job.fail(CancellationError()) }
                // Queued work still runs: it finishes quickly and its callers are waiting for an answer.
                for task in work { task() }
                return
            }
            while running.count < maxBatch, !waiting.isEmpty { running.append(waiting.removeFirst()) }
            condition.unlock()
            for task in work { task() }

            running.removeAll { job in
                guard job.isCancelled else { return false }
                job.finish()
                return true
            }
            guard !running.isEmpty else { continue }
            do {
                let tokens = try generator.step(running.map(\.generation))
                for (job, token) in zip(running, tokens) {
                    if let token { job.yield(token) }
                }
            } catch {
                for job in running { job.fail(error) }
                running = []
                continue
            }
            running.removeAll { job in
                guard job.generation.isFinished else { return false }
                job.finish()
                return true
            }
        }
    }
}

/// One request's place in the batch.
package final class SchedulerJob: @unchecked Sendable {
    package let generation: Generation
    package let tokens: AsyncThrowingStream<GeneratedToken, any Error>
    private let continuation: AsyncThrowingStream<GeneratedToken, any Error>.Continuation
    private let lock = NSLock()
    private var cancelled = false

    init(generation: Generation) {
        self.generation = generation
        (tokens, continuation) = AsyncThrowingStream.makeStream(bufferingPolicy: .unbounded)
    }

    /// Asks the scheduler to drop this sequence before its next step.
    package func cancel() {
        lock.withLock { cancelled = true }
    }

    var isCancelled: Bool { lock.withLock { cancelled } }

    func yield(_ token: GeneratedToken) { continuation.yield(token) }
    func finish() { continuation.finish() }
    func fail(_ error: any Error) { continuation.finish(throwing: error) }
}
