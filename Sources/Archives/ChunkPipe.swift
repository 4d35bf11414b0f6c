import Foundation

/// A bounded queue of byte chunks between a blocking thread (libarchive's callbacks) and an async task (an
/// HTTP body), in either direction: the side that runs on a thread blocks, the async side suspends, and a full
/// queue holds the writer back, so an archive streams through memory a few chunks at a time.
///
/// The writer ends the stream with ``finish(throwing:)``; the reader gives up with ``abandon()``, after which
/// the writer's sends throw ``Abandoned``.
package final class ChunkPipe: @unchecked Sendable {
    /// The reader went away; the writer should stop.
    package struct Abandoned: Error, CustomStringConvertible {
        package var description: String { "the other end of the archive stream went away" }
    }

    private let condition = NSCondition()
    private var chunks: [Data] = []
    private var finished = false
    private var failure: (any Error)?
    private var abandoned = false
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private let capacity: Int

    /// - Parameter capacity: how many chunks may wait before the writer is held back.
    package init(capacity: Int = 8) {
        self.capacity = max(1, capacity)
    }

    // MARK: Writer

    /// Queues a chunk, suspending while the queue is full.
    /// - Throws: ``Abandoned`` when the reader has given up.
    package func send(_ chunk: Data) async throws {
        while true {
            if try withLock({ try enqueueIfRoom(chunk) }) { return }
            await waitForChange { !self.abandoned && self.chunks.count >= self.capacity }
        }
    }

    /// Queues a chunk, blocking the calling thread while the queue is full.
    /// - Throws: ``Abandoned`` when the reader has given up.
    package func sendBlocking(_ chunk: Data) throws {
        condition.lock()
        defer { condition.unlock() }
        while !abandoned && chunks.count >= capacity { condition.wait() }
        _ = try enqueueIfRoom(chunk)
    }

    /// Ends the stream: the reader gets the queued chunks, then the end (or `error`).
    package func finish(throwing error: (any Error)? = nil) {
        withLock {
            finished = true
            failure = error
            changed()
        }
    }

    // MARK: Reader

    /// The next chunk, blocking the calling thread; nil at the end.
    /// - Throws: the writer's error.
    package func receiveBlocking() throws -> Data? {
        condition.lock()
        defer { condition.unlock() }
        while chunks.isEmpty && !finished && !abandoned { condition.wait() }
        return try dequeue()
    }

    /// The next chunk, suspending until there is one; nil at the end.
    /// - Throws: the writer's error.
    package func receive() async throws -> Data? {
        while true {
            let ready = withLock { !chunks.isEmpty || finished || abandoned }
            if ready { return try withLock { try dequeue() } }
            await waitForChange { self.chunks.isEmpty && !self.finished && !self.abandoned }
        }
    }

    /// The reader gives up: queued chunks are dropped and the writer's next send throws.
    package func abandon() {
        withLock {
            abandoned = true
            chunks.removeAll()
            changed()
        }
    }

    // MARK: Internals (called with the lock held)

    private func enqueueIfRoom(_ chunk: Data) throws -> Bool {
        if abandoned { throw Abandoned() }
        guard chunks.count < capacity else { return false }
        chunks.append(chunk)
        changed()
        return true
    }

    private func dequeue() throws -> Data? {
        if abandoned { throw Abandoned() }
        if !chunks.isEmpty {
            let chunk = chunks.removeFirst()
            changed()
            return chunk
        }
        if let failure { throw failure }
        return nil
    }

    /// Wakes every waiter, blocked or suspended, to look at the new state.
    private func changed() {
        condition.broadcast()
        let resumed = waiters
        waiters.removeAll()
        for waiter in resumed { waiter.resume() }
    }

    /// Suspends until the state changes, unless `stillBlocked` is already false.
    private func waitForChange(while stillBlocked: @escaping () -> Bool) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            if stillBlocked() {
                waiters.append(continuation)
                condition.unlock()
            } else {
                condition.unlock()
                continuation.resume()
            }
        }
    }

    private func withLock<T>(_ body: () throws -> T) rethrows -> T {
        condition.lock()
        defer { condition.unlock() }
        return try body()
    }
}
