import Catalog
import CoreMetrics
import Foundation
import Hubs
import Logging
import ModelStore
import ModeldAPI
import Synchronization
import Tracing
import Transfer

/// Pulls models from the hubs into the data directory and records their versions in the store.
///
/// ```swift
/// let configuration = PullConfiguration.fromEnvironment(dataDirectory: data, environment: env, maxDownloadRate: rate)
/// let service = PullService(configuration: configuration, store: store)
/// // once, in the daemon's task group or ServiceGroup (jobs run inside it; cancelling it cancels them):
/// await service.run()
/// // per request:
/// let job = service.pull(PullRequest(source: .huggingface, repo: "acme/tiny", revision: "main"))  // starts or joins
/// for await event in job.events() { /* one NDJSON line per PullEvent */ }
/// service.cancel(jobID: job.id)
/// try await service.versions()                                         // every stored version
/// try await service.remove(source: .huggingface, repo: "acme/tiny", commit: "0123abc")
/// let report = try await service.verify(source: .huggingface, repo: "acme/tiny", commit: "main")
/// ```
/// One job per (source, repo, revision): a second caller gets the running job. `commit` arguments accept a
/// full commit, a unique prefix of 7+ digits, or the revision a version was pulled as.
package final class PullService: Sendable, CustomStringConvertible {
    package let configuration: PullConfiguration
    package let store: Store
    /// Where pulled versions are placed; its repository claims keep pulls, imports, adoptions and removals apart.
    package let cache: ModelCache
    /// Job starts, ends and retries; messages never contain tokens.
    package let logger: Logger
    /// Bytes downloaded per hub, `modeld_pulled_bytes_total{source}`.
    let pulledBytes: [ModelSource: CoreMetrics.Counter]
    /// The libcurl handles of every hub request and download (each trusts `configuration.caBundle`).
    let pool: HandlePool<CurlDownload>
    private let registry = Mutex(Registry())
    private let partials = Mutex(Set<String>())
    private let submissions: AsyncStream<PullJob>
    private let submit: AsyncStream<PullJob>.Continuation

    private struct Registry {
        var active: [String: PullJob] = [:]
        var byID: [String: PullJob] = [:]
        var finishedOrder: [String] = []
    }

    /// - Parameter metrics: where the download counters go (the daemon passes its Prometheus factory).
    package init(
        configuration: PullConfiguration, store: Store, logger: Logger = Logger(label: "modeld.pull"),
        metrics: any MetricsFactory = MetricsSystem.factory
    ) {
        self.configuration = configuration
        self.store = store
        cache = ModelCache(dataDirectory: configuration.dataDirectory, store: store)
        self.logger = logger
        let caBundle = configuration.caBundle
        pool = HandlePool { try CurlDownload(caBundle: caBundle) }
        pulledBytes = Dictionary(
            uniqueKeysWithValues: ModelSource.allCases.map { source in
                (source, CoreMetrics.Counter(label: "modeld_pulled_bytes_total", dimensions: [("source", source.rawValue)], factory: metrics))
            })
        (submissions, submit) = AsyncStream<PullJob>.makeStream()
    }

    package var description: String { "PullService(\(configuration.dataDirectory.root.path))" }

    /// Runs submitted jobs until the calling task is cancelled (then every running job is cancelled).
    package func run() async {
        await withDiscardingTaskGroup { group in
            for await job in submissions {
                group.addTask { await self.execute(job) }
            }
        }
    }

    /// Starts a pull, or joins the running job for the same (source, repo, revision).
    package func pull(_ request: PullRequest) -> PullJob {
        let (job, isNew) = registry.withLock { registry -> (PullJob, Bool) in
            // A job that has sent its final event is done even if `execute` has not unregistered it yet.
            if let running = registry.active[request.jobKey], !running.isFinished { return (running, false) }
            let job = PullJob(request: request, traceContext: InstrumentationContext.current)
            registry.active[request.jobKey] = job
            registry.byID[job.id] = job
            return (job, true)
        }
        if isNew { submit.yield(job) }
        return job
    }

    /// A running or recently finished job.
    package func job(id: String) -> PullJob? {
        registry.withLock { $0.byID[id] }
    }

    /// The running jobs.
    package func activeJobs() -> [PullJob] {
        registry.withLock { $0.active.values.filter { !$0.isFinished } }
    }

    /// Cancels a job. - Returns: false when no such job runs.
    @discardableResult
    package func cancel(jobID: String) -> Bool {
        guard let job = job(id: jobID), !job.isFinished else { return false }
        job.cancel()
        return true
    }

    /// Every stored version, newest first.
    package func versions() async throws -> [LocalVersion] {
        try await store.localVersions()
    }

    /// Runs a job in its span, `pull`: a child of the request that started it, with one child per file (``traced(_:_:)``).
    private func execute(_ job: PullJob) async {
        await withSpan("pull", context: job.traceContext ?? .topLevel) { span in
            span.updateAttributes { attributes in
                attributes["modeld.pull.job"] = job.id
                attributes["modeld.pull.source"] = job.request.source.rawValue
                attributes["modeld.pull.repo"] = job.request.repo
                attributes["modeld.pull.revision"] = job.request.revision
            }
            await run(job)
            let outcome = job.current
            span.attributes["modeld.pull.state"] = outcome.state.rawValue
            span.attributes["modeld.pull.bytes"] = Int(outcome.totalBytes)
            if let error = outcome.error { span.setStatus(SpanStatus(code: .error, message: error.message)) }
        }
    }

    /// One file of a pull in its span, `pull file`, a child of the pull's: its path and size, and whether it was
    /// downloaded (`verified`) or already present.
    func traced(_ path: String, size: Int64, _ body: () async throws -> String) async throws {
        try await withSpan("pull file") { span in
            span.attributes["modeld.pull.file"] = path
            span.attributes["modeld.pull.file.size"] = Int(size)
            span.attributes["modeld.pull.file.state"] = try await body()
        }
    }

    private func run(_ job: PullJob) async {
        await withTaskCancellationHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: self.configuration.progressInterval)
                        job.tick()
                    }
                }
                let metadata: Logger.Metadata = [
                    "job": "\(job.id)", "source": "\(job.request.source.rawValue)", "repo": "\(job.request.repo)",
                    "revision": "\(job.request.revision)",
                ]
                logger.info("pull started", metadata: metadata)
                do {
                    try job.request.validate()
                    try await cache.waitUntilUnclaimed(source: job.request.source, repo: job.request.repo, cancel: job.cancelRequested)
                    switch job.request.source {
                    case .huggingface: try await pullHuggingFace(job)
                    case .modelscope: try await pullModelScope(job)
                    }
                    let done = job.current
                    logger.info(
                        "pull finished",
                        metadata: metadata.merging(
                            ["commit": "\(done.commit ?? "")", "bytes": "\(done.totalBytes)", "already_present": "\(done.alreadyPresent ?? false)"]
                        ) { $1 })
                } catch {
                    var failure = error as? PullError ?? PullError(.storage, "pull of \(job.request.repo) failed: \(error)")
                    if job.cancelRequested.isCancelled { failure = .cancelled("\(job.request.repo)@\(job.request.revision)") }
                    job.fail(failure)
                    logger.notice("pull failed", metadata: metadata.merging(["code": "\(failure.code)", "error": "\(failure.message)"]) { $1 })
                }
                group.cancelAll()
            }
        } onCancel: {
            job.cancel()
        }
        registry.withLock { registry in
            if registry.active[job.request.jobKey] === job { registry.active[job.request.jobKey] = nil }
            registry.finishedOrder.append(job.id)
            if registry.finishedOrder.count > 100 {
                registry.byID[registry.finishedOrder.removeFirst()] = nil
            }
        }
    }

    // MARK: Shared helpers for the hub-specific pulls

    var requester: HubRequester {
        HubRequester(
            pool: pool, policy: configuration.retry, stallTimeout: configuration.stallTimeout, httpVersion: configuration.httpVersion,
            logger: logger)
    }

    /// Fails with a clear message when the bytes still to download do not fit.
    /// - Parameter verb: what the bytes are for, as the message says it (`pull`, `import`).
    package func checkFreeSpace(needed: Int64, repo: String, doing verb: String = "pull") throws {
        guard needed > 0, let free = configuration.freeSpace(configuration.dataDirectory.tmp) else { return }
        // Keep a small margin so the store and logs can still be written.
        let margin: Int64 = 64 << 20
        if needed + margin > free {
            throw PullError(
                .diskFull,
                "not enough disk space to \(verb) \(repo): needs \(formatBytes(needed)), \(formatBytes(free)) free in \(configuration.dataDirectory.root.path)"
            )
        }
    }

    /// Runs `body` while holding the partial file `key`, so two jobs never write the same partial file.
    func withPartial<T: Sendable>(_ key: String, cancel: CancellationFlag, _ body: () async throws -> T) async throws -> T {
        while !partials.withLock({ $0.insert(key).inserted }) {
            if cancel.isCancelled { throw PullError(.cancelled, "cancelled") }
            try? await Task.sleep(for: .milliseconds(50))
        }
        defer { _ = partials.withLock { $0.remove(key) } }
        return try await body()
    }

    /// Whether a job for this repository is running.
    package func isPulling(source: ModelSource, repo: String) -> Bool {
        registry.withLock {
            $0.active.values.contains { $0.request.source == source && $0.request.repo == repo && !$0.isFinished }
        }
    }

    /// Runs `body` while no pull, import, adoption or removal of the repository runs beside it: they all change
    /// its blobs, snapshots and versions. A pull that starts meanwhile waits until `body` is done.
    /// - Parameter what: what `body` does, as an error refusing another operation names it (`an import`).
    /// - Throws: ``PullError/Code/busy`` when a pull of the repository is running, or another such operation.
    package func claiming<T>(source: ModelSource, repo: String, for what: String, _ body: () throws -> T) throws -> T {
        // Checked after the claim: a pull that starts from now on waits for it.
        try cache.claiming(
            source: source, repo: repo, for: what,
            admit: {
                guard !isPulling(source: source, repo: repo) else { throw PullError.beingPulled(repo) }
            }, body)
    }
}

/// Runs `body` for each item, at most `limit` at once; the first error cancels the rest.
func forEachConcurrently<T: Sendable>(
    _ items: [T], limit: Int, _ body: @escaping @Sendable (T) async throws -> Void
) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        var iterator = items.makeIterator()
        for _ in 0..<max(1, limit) {
            guard let item = iterator.next() else { break }
            group.addTask { try await body(item) }
        }
        while try await group.next() != nil {
            if let item = iterator.next() {
                group.addTask { try await body(item) }
            }
        }
    }
}
