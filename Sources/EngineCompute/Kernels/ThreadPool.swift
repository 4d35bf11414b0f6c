import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A persistent set of worker threads running one data-parallel job at a time.
///
/// A forward pass is ~170 small jobs per token, so dispatch cost matters: workers spin briefly on
/// an atomic job counter (a few microseconds between jobs of one pass) and park on a condition
/// variable once the engine goes idle. A job is cut into a few contiguous chunks per thread that
/// threads claim from an atomic counter: on an idle machine each thread ends up with about its
/// share, and on a busy one a thread that is waiting for a CPU does not hold the others up — the
/// caller finishes the chunks it has not claimed, and waits only for chunks already started.
package final class ThreadPool: @unchecked Sendable {
    /// Threads taking part in a job, the caller's included.
    package let threadCount: Int

    /// Even while a job is published, odd between jobs.
    private let generation = Atomic<Int>(1)
    private let nextChunk = Atomic<Int>(0)
    private let doneChunks = Atomic<Int>(0)
    /// Workers between deciding to read the current job and finishing with it.
    private let inside = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    /// The current job and its chunk count; written only while `generation` is odd and no worker
    /// is `inside`, read only by workers `inside` the even generation that published them.
    private var job: ((Int) -> Void)?
    private var chunkCount = 0
    /// Held for the length of a job so that concurrent callers do not overwrite each other's.
    private let jobLock = NSLock()
    /// Loads of the job counter a worker makes before parking (tens of microseconds), yielding
    /// now and then so a busy machine's other threads still get the CPU.
    private let spinLimit = 200_000

    /// A pool for the machine's cores, shared by every model in the process; the environment
    /// variable `MODELD_ENGINE_THREADS` overrides the count (to leave cores to other work, or to
    /// measure scaling).
    package static let shared = ThreadPool(
        threadCount: ProcessInfo.processInfo.environment["MODELD_ENGINE_THREADS"].flatMap { Int($0) }
            ?? ProcessInfo.processInfo.activeProcessorCount
    )

    /// Starts `threadCount - 1` workers; the calling thread takes part in every job.
    package init(threadCount: Int) {
        self.threadCount = max(1, threadCount)
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        for index in 1..<self.threadCount {
            let thread = Thread { [self] in self.work() }
            thread.name = "engine-\(index)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Runs `body(chunk)` for every chunk in `0..<chunks`, spread over the pool's threads, and
    /// returns when all are done.
    ///
    /// Callers on different threads (two models, or tests running in parallel) take turns.
    package func run(chunks: Int, _ body: (Int) -> Void) {
        guard threadCount > 1, chunks > 1 else {
            for chunk in 0..<chunks { body(chunk) }
            return
        }
        jobLock.lock()
        defer { jobLock.unlock() }
        withoutActuallyEscaping(body) { body in
            // `generation` is odd between jobs and the previous job is retired: publish this one.
            job = body
            chunkCount = chunks
            nextChunk.store(0, ordering: .relaxed)
            doneChunks.store(0, ordering: .relaxed)
            generation.add(1, ordering: .sequentiallyConsistent)
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                pthread_mutex_lock(mutex)
                pthread_cond_broadcast(condition)
                pthread_mutex_unlock(mutex)
            }
            drain(body, chunks: chunks)
            // On a busy machine a worker may hold a chunk while waiting for a CPU: after a short
            // spin, yield ours rather than burn the time slice it needs.
            var spins = 0
            while doneChunks.load(ordering: .acquiring) < chunks {
                spins += 1
                if spins > 2_000 { sched_yield() }
            }
            // Retire the job before `body` goes out of scope: once no worker is inside it, nobody
            // can read `job` any more.
            generation.add(1, ordering: .sequentiallyConsistent)
            while inside.load(ordering: .sequentiallyConsistent) > 0 { sched_yield() }
            job = nil
        }
    }

    /// Splits `0..<count` into contiguous ranges with boundaries on multiples of `alignment` (a
    /// few per thread) and runs `body` on each in parallel.
    package func forEachRange(_ count: Int, alignment: Int = 1, _ body: (Range<Int>) -> Void) {
        let blocks = (count + alignment - 1) / alignment
        let chunks = min(blocks, threadCount == 1 ? 1 : threadCount * 4)
        guard chunks > 1 else {
            if count > 0 { body(0..<count) }
            return
        }
        run(chunks: chunks) { chunk in
            let start = min(count, blocks * chunk / chunks * alignment)
            let end = min(count, blocks * (chunk + 1) / chunks * alignment)
            if start < end { body(start..<end) }
        }
    }

    private func drain(_ body: (Int) -> Void, chunks: Int) {
        while true {
            let chunk = nextChunk.wrappingAdd(1, ordering: .relaxed).oldValue
            guard chunk < chunks else { return }
            body(chunk)
            doneChunks.add(1, ordering: .releasing)
        }
    }

    private func work() {
        var seen = 1
        while true {
            var spins = 0
            func waiting(_ current: Int) -> Bool { current == seen || current & 1 == 1 }
            while waiting(generation.load(ordering: .acquiring)), spins < spinLimit {
                spins += 1
                if spins & 1023 == 0 { sched_yield() }
            }
            if waiting(generation.load(ordering: .acquiring)) {
                pthread_mutex_lock(mutex)
                sleepers.add(1, ordering: .sequentiallyConsistent)
                while waiting(generation.load(ordering: .sequentiallyConsistent)) {
                    pthread_cond_wait(condition, mutex)
                }
                sleepers.subtract(1, ordering: .sequentiallyConsistent)
                pthread_mutex_unlock(mutex)
            }
            seen = generation.load(ordering: .acquiring)
            guard seen & 1 == 0 else { continue }
            inside.add(1, ordering: .sequentiallyConsistent)
            // Still the job we saw? Then it stays valid until we leave; otherwise skip it.
            if generation.load(ordering: .sequentiallyConsistent) == seen, let job {
                drain(job, chunks: chunkCount)
            }
            inside.subtract(1, ordering: .sequentiallyConsistent)
        }
    }
}
