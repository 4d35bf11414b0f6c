import Catalog
import Foundation
import Hubs
import ModeldAPI
import Synchronization
import Tracing

/// One pull in progress: its state, the progress of its files, and the subscribers to its events.
///
/// Every caller that asks for the same (source, repo, revision) while it runs gets the same job. Transfer
/// threads report bytes through ``fileProgress(_:bytes:)``; a ticker turns them into `progress` events.
package final class PullJob: Sendable, Identifiable {
    package let id: String
    package let request: PullRequest
    /// The trace context of the request that started the job: the pull's span is its child (docs/tracing.md).
    let traceContext: InstrumentationContext?
    let cancelFlag = CancellationFlag()
    /// Set by ``cancel()`` (the user or shutdown), unlike `cancelFlag`, which a failing sibling transfer also sets.
    let cancelRequested = CancellationFlag()
    private let state = Mutex(State())

    private struct FileState {
        var size: Int64
        var completed: Int64 = 0
        var phase: String = "pending"
    }

    private struct State {
        var phase: PullEvent.State = .queued
        var commit: String?
        var order: [String] = []
        var files: [String: FileState] = [:]
        var totalBytes: Int64 = 0
        var completedBytes: Int64 = 0
        var filesDone = 0
        var transferred: Int64 = 0
        var sample: (time: ContinuousClock.Instant, transferred: Int64)?
        var speed: Double?
        var path: String?
        var error: PullError?
        var alreadyPresent = false
        var final: PullEvent?
        var subscribers: [Int: AsyncStream<PullEvent>.Continuation] = [:]
        var nextSubscriber = 0
    }

    init(request: PullRequest, traceContext: InstrumentationContext? = nil) {
        self.id = String(UUID().uuidString.lowercased().prefix(8))
        self.request = request
        self.traceContext = traceContext
    }

    // MARK: Reading

    /// The job's state as an event (what a new subscriber sees first).
    package var current: PullEvent {
        state.withLock { makeEvent(.status, $0) }
    }

    package var isFinished: Bool { state.withLock { $0.final != nil } }

    /// Events from now on, starting with the current state; the stream ends after `done` or `error`.
    package func events() -> AsyncStream<PullEvent> {
        let (stream, continuation) = AsyncStream<PullEvent>.makeStream(bufferingPolicy: .bufferingNewest(1024))
        state.withLock { state in
            if let final = state.final {
                continuation.yield(final)
                continuation.finish()
                return
            }
            continuation.yield(makeEvent(.status, state))
            let key = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[key] = continuation
            continuation.onTermination = { [weak self] _ in
                _ = self?.state.withLock { $0.subscribers.removeValue(forKey: key) }
            }
        }
        return stream
    }

    /// Waits for the end of the job.
    /// - Returns: the snapshot directory of the ready version.
    /// - Throws: the ``PullError`` that ended the job.
    package func result() async throws -> String {
        var last: PullEvent?
        for await event in events() { last = event }
        let outcome = state.withLock { ($0.path, $0.error) }
        if let path = outcome.0 { return path }
        throw outcome.1 ?? PullError(.cancelled, last?.error?.message ?? "pull of \(request.repo) ended without a result")
    }

    /// Asks the job to stop; transfers notice within a fraction of a second and the job ends `cancelled`.
    package func cancel() {
        cancelRequested.cancel()
        cancelFlag.cancel()
    }

    // MARK: Updates from the pull

    func setPhase(_ phase: PullEvent.State, commit: String? = nil) {
        state.withLock { state in
            state.phase = phase
            if let commit { state.commit = commit }
            broadcast(makeEvent(.status, state), &state)
        }
    }

    /// Declares the files to fetch, with their sizes.
    func setPlan(_ files: [(path: String, size: Int64)]) {
        state.withLock { state in
            state.order = files.map(\.path)
            state.files = Dictionary(files.map { ($0.path, FileState(size: $0.size)) }, uniquingKeysWith: { a, _ in a })
            state.totalBytes = files.reduce(0) { $0 + $1.size }
            state.completedBytes = 0
            state.filesDone = 0
        }
    }

    /// Bytes of `path` now on disk (called from transfer threads).
    func fileProgress(_ path: String, bytes: Int64) {
        state.withLock { state in
            guard var file = state.files[path] else { return }
            let delta = bytes - file.completed
            file.completed = bytes
            file.phase = "downloading"
            state.files[path] = file
            state.completedBytes += delta
            if delta > 0 { state.transferred += delta }
        }
    }

    /// A file is complete: `verified` after a download, `present` when its blob was already there.
    func fileDone(_ path: String, how: String) {
        state.withLock { state in
            guard var file = state.files[path], file.phase != "verified" && file.phase != "present" else { return }
            state.completedBytes += file.size - file.completed
            file.completed = file.size
            file.phase = how
            state.files[path] = file
            state.filesDone += 1
            var event = makeEvent(.file, state)
            event.file = PullEvent.FileProgress(path: path, completedBytes: file.size, totalBytes: file.size, state: how)
            broadcast(event, &state)
        }
    }

    /// Sends a `progress` event with the current speed and ETA.
    func tick() {
        state.withLock { state in
            guard state.final == nil, state.phase == .downloading else { return }
            let now = ContinuousClock.now
            if let sample = state.sample {
                let elapsed = now - sample.time
                let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                if seconds > 0 {
                    let instant = Double(state.transferred - sample.transferred) / seconds
                    state.speed = state.speed.map { 0.7 * $0 + 0.3 * instant } ?? instant
                }
            }
            state.sample = (now, state.transferred)
            var event = makeEvent(.progress, state)
            event.activeFiles = state.order.compactMap { path in
                guard let file = state.files[path], file.phase == "downloading" else { return nil }
                return PullEvent.FileProgress(path: path, completedBytes: file.completed, totalBytes: file.size, state: file.phase)
            }
            broadcast(event, &state)
        }
    }

    /// Ends the job with a ready version.
    func finish(path: String, commit: String, alreadyPresent: Bool) {
        state.withLock { state in
            guard state.final == nil else { return }
            state.phase = .ready
            state.commit = commit
            state.path = path
            state.alreadyPresent = alreadyPresent
            if alreadyPresent { state.completedBytes = state.totalBytes }
            state.speed = nil
            let event = makeEvent(.done, state)
            end(with: event, &state)
        }
    }

    /// Ends the job with an error (or as cancelled).
    func fail(_ error: PullError) {
        state.withLock { state in
            guard state.final == nil else { return }
            state.phase = error.code == .cancelled ? .cancelled : .failed
            state.error = error
            state.speed = nil
            let event = makeEvent(.error, state)
            end(with: event, &state)
        }
    }

    // MARK: Helpers (called with the lock held)

    private func makeEvent(_ kind: PullEvent.Kind, _ state: State) -> PullEvent {
        let remaining = max(0, state.totalBytes - state.completedBytes)
        var eta: Double?
        if let speed = state.speed, speed > 0, state.phase == .downloading { eta = Double(remaining) / speed }
        return PullEvent(
            event: kind, jobID: id, source: request.source.rawValue, repo: request.repo, revision: request.revision,
            commit: state.commit, state: state.phase, completedBytes: state.completedBytes, totalBytes: state.totalBytes,
            filesDone: state.filesDone, filesTotal: state.order.count, bytesPerSecond: state.speed, etaSeconds: eta,
            path: state.path, error: state.error.map { PullEvent.Failure(code: $0.code.name, message: $0.message) },
            alreadyPresent: state.phase == .ready ? state.alreadyPresent : nil)
    }

    private func broadcast(_ event: PullEvent, _ state: inout State) {
        for continuation in state.subscribers.values { continuation.yield(event) }
    }

    private func end(with event: PullEvent, _ state: inout State) {
        state.final = event
        let subscribers = state.subscribers
        state.subscribers = [:]
        for continuation in subscribers.values {
            // Its termination handler takes the lock we hold: drop it first.
            continuation.onTermination = nil
            continuation.yield(event)
            continuation.finish()
        }
    }
}
