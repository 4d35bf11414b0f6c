import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A persistent set of worker threads running one data-parallel job at a time.
///
/// A forward pass is ~170 small jobs per token, so dispatch cost matters: workers spin briefly on
/// an atomic job counter (a few microseconds between jobs of one pass) and park on a condition
/// variable once the engine goes idle. Each job is split into fixed, contiguous partitions, one
/// per thread, so a thread keeps touching the same weight rows and its own cache (the vCPUs of
/// our machines read each other's caches slowly).
package final class ThreadPool: @unchecked Sendable {
    /// Threads taking part in a job, the caller's included.
    package let threadCount: Int

    private let generation = Atomic<Int>(0)
    private let remaining = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    /// The current job; written before `generation` is bumped and read after it is observed.
    private var job: ((Int) -> Void)?
    /// Held for the length of a job so that concurrent callers do not overwrite each other's.
    private let jobLock = NSLock()
    /// Loads of the job counter a worker makes before parking (tens of microseconds).
    private let spinLimit = 200_000

    /// A pool for the machine's cores, shared by every model in the process; the environment
    /// variable `MODELD_ENGINE_THREADS` overrides the count (to leave cores to other work, or to
    /// measure scaling).
    package static let shared = ThreadPool(
        threadCount: ProcessInfo.processInfo.environment["MODELD_ENGINE_THREADS"].flatMap { Int($0) }
            ?? ProcessInfo.processInfo.activeProcessorCount
    )

    /// Starts `threadCount - 1` workers; the calling thread is the first participant of each job.
    package init(threadCount: Int) {
        self.threadCount = max(1, threadCount)
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        for index in 1..<self.threadCount {
            let thread = Thread { [self] in self.work(index: index) }
            thread.name = "engine-\(index)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Runs `body(index)` once on each of the `threadCount` threads and returns when all are done.
    ///
    /// Callers on different threads (two models, or tests running in parallel) take turns: the
    /// workers serve one job at a time.
    package func run(_ body: (Int) -> Void) {
        guard threadCount > 1 else {
            body(0)
            return
        }
        jobLock.lock()
        defer { jobLock.unlock() }
        withoutActuallyEscaping(body) { body in
            job = body
            remaining.store(threadCount - 1, ordering: .sequentiallyConsistent)
            generation.add(1, ordering: .sequentiallyConsistent)
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                pthread_mutex_lock(mutex)
                pthread_cond_broadcast(condition)
                pthread_mutex_unlock(mutex)
            }
            body(0)
            while remaining.load(ordering: .acquiring) > 0 {}
            job = nil
        }
    }

    /// Splits `0..<count` into one contiguous range per thread, boundaries on multiples of
    /// `alignment`, and runs `body` on each non-empty range in parallel.
    package func forEachRange(_ count: Int, alignment: Int = 1, _ body: (Range<Int>) -> Void) {
        let parts = threadCount
        guard parts > 1, count >= 2 * alignment else {
            if count > 0 { body(0..<count) }
            return
        }
        let blocks = (count + alignment - 1) / alignment
        run { index in
            let start = min(count, blocks * index / parts * alignment)
            let end = min(count, blocks * (index + 1) / parts * alignment)
            if start < end { body(start..<end) }
        }
    }

    private func work(index: Int) {
        var seen = 0
        while true {
            var spins = 0
            while generation.load(ordering: .acquiring) == seen, spins < spinLimit { spins += 1 }
            if generation.load(ordering: .acquiring) == seen {
                pthread_mutex_lock(mutex)
                sleepers.add(1, ordering: .sequentiallyConsistent)
                while generation.load(ordering: .sequentiallyConsistent) == seen {
                    pthread_cond_wait(condition, mutex)
                }
                sleepers.subtract(1, ordering: .sequentiallyConsistent)
                pthread_mutex_unlock(mutex)
            }
            seen = generation.load(ordering: .acquiring)
            job?(index)
            remaining.subtract(1, ordering: .releasing)
        }
    }
}
