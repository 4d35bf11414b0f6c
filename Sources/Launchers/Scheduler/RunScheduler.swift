import Catalog
import Foundation
import Logging
import ModelStore
import ModeldAPI
import ServiceLifecycle
import Synchronization

/// Gives a request a backend for a model, and decides which runs stay loaded. Every route that sends requests
/// to engines goes through it (the gateway, its fast path, the LLM API, the Ollama API):
///
/// - **Candidates**: the ready runs that answer to the name (``matches(_:_:)``: a run's name, its served name, or
///   the model it was started with); the least busy one (fewest leases) gets the request.
/// - **On-demand start**: a pulled model with no ready run is started on its catalog entry's default engine
///   (the newest ready version), or a run unloaded when idle is started again, or a start already under way is
///   joined; the request waits until the run is ready, bounded by the on-demand timeout.
/// - **The loaded-runs limit** (`max_loaded_runs`, 0 for none): a start counts as loaded from the moment it is
///   admitted, so concurrent starts never go over the limit. To make room, the least recently used idle
///   on-demand runs are unloaded; a run held by a lease is never. An on-demand start with no room gets
///   ``SchedulerError/unavailable(_:)`` (503); an explicit start (``start(_:)``) only evicts on-demand runs and
///   goes over the limit rather than be refused.
/// - **Keep-alive**: when a run's last lease is released, a timer is armed for its keep-alive (the last
///   request's, else the run's own). When it fires and the run is still idle, and has been for its keep-alive,
///   the run is unloaded: an on-demand run is forgotten (its log stays), an explicit one stopped (a request naming
///   it starts it again). A run used meanwhile is not unloaded: the timer is armed again for the rest of its
///   keep-alive, so that a run in steady use costs one timer per keep-alive period rather than one per request.
///
/// Leases are taken and released without a hop onto the actor (``acquireReady(_:)``, ``RunLease/release()``): the
/// gateway's fast path takes them on the connection's event loop. The scheduler follows the supervisor's changes
/// (``Supervisor/changes(buffering:)``) to learn when runs become ready or go away.
package actor RunScheduler {
    /// One loaded run's use.
    struct Activity {
        /// Leases held.
        var inFlight = 0
        /// Requests waiting for the run's start, each to become a lease.
        var holds = 0
        var lastUsed: ContinuousClock.Instant
        /// The run's own keep-alive, in seconds; nil keeps it until stopped.
        var runKeepAlive: Int?
        /// The last request's keep-alive, which overrides the run's.
        var requested: KeepAlive?
        /// Seen ready: its keep-alive runs when it is idle.
        var seenReady = false
        /// Being unloaded: no new lease, and it no longer counts towards the limit.
        var leaving = false
        /// Wakes when the keep-alive may have passed (``RunScheduler/expire(_:timer:)``).
        var timer: Timer?

        init(_ run: RunInfo, now: ContinuousClock.Instant) {
            lastUsed = now
            runKeepAlive = run.keepAlive
        }

        var busy: Bool { inFlight > 0 || holds > 0 }
        /// Seconds idle before the run is unloaded; nil for never.
        var keepAlive: Int? { requested.map(\.seconds) ?? runKeepAlive }
    }

    /// A keep-alive timer: a task asleep until `deadline`.
    struct Timer {
        let id: Int
        let deadline: ContinuousClock.Instant
        let task: Task<Void, Never>
    }

    /// What the leases and timers share, behind one lock.
    struct Book {
        var runs: [String: Activity] = [:]
        var timers = 0
        /// Set at shutdown: no timer is armed any more.
        var stopped = false
        var watcher: Task<Void, Never>?
    }

    /// Starts under way for requests, by model name: the requests waiting for one share it.
    private struct PendingStart {
        let task: Task<RunInfo, any Error>
        var waiters: Int
    }

    package nonisolated let supervisor: Supervisor
    package nonisolated let catalog: ModelCatalog
    package nonisolated let store: Store
    /// The most runs loaded (starting or ready) at once; 0 for no limit.
    let maxLoaded: Int
    /// The keep-alive of runs started on demand.
    let onDemandKeepAlive: KeepAlive
    /// How long a request waits for an on-demand start.
    let startTimeout: Duration
    let logger: Logger
    private let book = Mutex(Book())
    /// The ids of the runs admitted under the limit whose start is under way: each holds a place until the
    /// supervisor lists its run as loaded (then it counts as that run).
    private var admitted: Set<String> = []
    private var starts: [String: PendingStart] = [:]
    /// Unloads under way, by run id: a start of the same model waits for them.
    private var unloads: [String: Task<Void, Never>] = [:]

    package init(
        supervisor: Supervisor, catalog: ModelCatalog, store: Store, maxLoadedRuns: Int, onDemandKeepAlive: KeepAlive,
        startTimeout: Duration, logger: Logger
    ) {
        self.supervisor = supervisor
        self.catalog = catalog
        self.store = store
        self.maxLoaded = maxLoadedRuns
        self.onDemandKeepAlive = onDemandKeepAlive
        self.startTimeout = startTimeout
        self.logger = logger
        let changes = supervisor.changes()
        let watcher = Task { [weak self] in
            for await runs in changes {
                guard let self else { return }
                self.observe(runs)
            }
        }
        book.withLock { $0.watcher = watcher }
    }

    // MARK: Leases

    /// A lease on a run for `model`: the least busy ready run, else one started on demand.
    /// - Parameters:
    ///   - keepAlive: this request's keep-alive, which replaces the run's from now on (as Ollama's `keep_alive`):
    ///     `.seconds(0)` unloads the run when its last lease is released, `.never` keeps it loaded.
    ///   - prefer: which runs to choose among when any of the candidates is one (the LLM API's structured output
    ///     prefers engines that can constrain it); else all candidates are.
    /// - Throws: ``SchedulerError``: nothing answers to `model` (not found), or no run can serve it (unavailable).
    package func acquire(
        _ model: String, keepAlive: KeepAlive? = nil, prefer: @Sendable (RunInfo) -> Bool = { _ in true }
    ) async throws -> RunLease {
        let ready = Self.readyRuns(model, in: supervisor.snapshot)
        if let lease = lease(among: ready.filter(prefer), keepAlive: keepAlive) ?? lease(among: ready, keepAlive: keepAlive) {
            return lease
        }
        let key = model.lowercased()
        let start: Task<RunInfo, any Error>
        if let pending = starts[key] {
            start = pending.task
            starts[key]?.waiters += 1
        } else {
            start = Task { try await self.startForRequests(model, key: key) }
            starts[key] = PendingStart(task: start, waiters: 1)
        }
        // The start leaves a hold on the run for each request that waits for it: this one's becomes its lease.
        return lease(held: try await start.value, keepAlive: keepAlive)
    }

    /// A lease on the least busy ready run for `model`, or nil when none is ready (the caller may then
    /// ``acquire(_:keepAlive:prefer:)``). Synchronous, for the gateway's fast path.
    package nonisolated func acquireReady(_ model: String) -> RunLease? {
        lease(among: Self.readyRuns(model, in: supervisor.snapshot), keepAlive: nil)
    }

    /// Applies a request's keep-alive to the run of its lease, as ``acquire(_:keepAlive:prefer:)`` does when it
    /// gives the lease: for the gateway's fast path, which takes its lease before it knows the request is allowed
    /// (a refused request must not change the run's keep-alive).
    package nonisolated func apply(_ keepAlive: KeepAlive, to lease: RunLease) {
        let now = ContinuousClock.now
        book.withLock { book in
            guard var activity = book.runs[lease.run.runID] else { return }
            Self.use(&activity, now: now, keepAlive: keepAlive)
            book.runs[lease.run.runID] = activity
        }
    }

    /// A lease on this ready run, for a request that names the run itself; nil when it is being unloaded.
    package nonisolated func acquire(run: RunInfo) -> RunLease? {
        lease(among: [run], keepAlive: nil)
    }

    /// The least busy of `candidates` that is not being unloaded, leased.
    private nonisolated func lease(among candidates: [RunInfo], keepAlive: KeepAlive?) -> RunLease? {
        guard !candidates.isEmpty else { return nil }
        let now = ContinuousClock.now
        let chosen = book.withLock { book -> RunInfo? in
            var chosen: RunInfo?
            var fewest = Int.max
            for run in candidates {
                let activity = book.runs[run.runID]
                if activity?.leaving == true { continue }
                if activity?.inFlight ?? 0 < fewest {
                    chosen = run
                    fewest = activity?.inFlight ?? 0
                }
            }
            guard let chosen else { return nil }
            var activity = book.runs[chosen.runID] ?? Activity(chosen, now: now)
            activity.inFlight += 1
            Self.use(&activity, now: now, keepAlive: keepAlive)
            book.runs[chosen.runID] = activity
            return chosen
        }
        return chosen.map { RunLease(run: $0, scheduler: self) }
    }

    /// A lease on a run just started for a waiting request, in place of the hold the start left for it.
    private nonisolated func lease(held run: RunInfo, keepAlive: KeepAlive?) -> RunLease {
        let now = ContinuousClock.now
        book.withLock { book in
            var activity = book.runs[run.runID] ?? Activity(run, now: now)
            activity.holds = max(0, activity.holds - 1)
            activity.inFlight += 1
            Self.use(&activity, now: now, keepAlive: keepAlive)
            book.runs[run.runID] = activity
        }
        return RunLease(run: run, scheduler: self)
    }

    /// A lease or hold taken: the timer, if any, stays (it finds the run busy, or used since, when it fires).
    private static func use(_ activity: inout Activity, now: ContinuousClock.Instant, keepAlive: KeepAlive?) {
        activity.lastUsed = now
        if let keepAlive { activity.requested = keepAlive }
    }

    /// A lease ended (``RunLease/release()``).
    nonisolated func ended(_ runID: String) {
        let now = ContinuousClock.now
        book.withLock { book in
            guard var activity = book.runs[runID] else { return }
            activity.inFlight -= 1
            activity.lastUsed = now
            if !activity.busy { arm(runID, &activity, in: &book) }
            book.runs[runID] = activity
        }
    }

    /// The leases held on a run now (the routing layer's least-busy choice among backends).
    package nonisolated func inFlight(_ runID: String) -> Int {
        book.withLock { $0.runs[runID]?.inFlight ?? 0 }
    }

    /// When a run was last used (its last lease released, or taken), while it is loaded.
    package func lastUsed(_ runID: String) -> Date? {
        book.withLock { $0.runs[runID].map { Self.date($0.lastUsed) } }
    }

    /// When the run will be unloaded if no request comes (its keep-alive from its last use, or from now while it
    /// is in use); nil when it stays loaded until stopped, or is not loaded.
    package func expiresAt(_ runID: String) -> Date? {
        book.withLock { book in
            guard let activity = book.runs[runID], !activity.leaving, let seconds = activity.keepAlive else { return nil }
            return Self.date((activity.busy ? .now : activity.lastUsed) + .seconds(seconds))
        }
    }

    private static func date(_ instant: ContinuousClock.Instant) -> Date {
        Date(timeIntervalSinceNow: (instant - .now) / .seconds(1))
    }

    // MARK: Starts

    /// Starts a run the user asked for (`modelctl start`): idle on-demand runs are unloaded to make room under the
    /// limit, but the start itself is not refused for it.
    /// - Throws: ``LaunchError`` from the supervisor.
    package func start(_ request: RunRequest) async throws -> RunInfo {
        var request = request
        let id = request.id ?? RunRequest.newID()
        request.id = id
        return try await load(request.model, runID: id, strict: false) { try await supervisor.start(request) }
    }

    /// Starts `model` for the requests that wait for it (``starts``) and waits until it is ready, bounded by
    /// ``startTimeout``. From the moment the run exists until it is ready it holds one place for them (it is not
    /// evicted); once ready, it holds one per waiting request.
    private func startForRequests(_ model: String, key: String) async throws -> RunInfo {
        var held: RunInfo?
        do {
            // A run of this model being unloaded goes first: its engine leaves before another loads.
            for run in supervisor.snapshot where Self.matches(run, model) {
                await unloads[run.runID]?.value
            }
            let runs = supervisor.snapshot.filter { Self.matches($0, model) }
            let run: RunInfo
            if let starting = runs.first(where: { $0.state == .starting }) {
                run = starting
            } else if let unloaded = runs.last(where: { $0.keepAlive != nil && !$0.state.isLive }) {
                // A run with a keep-alive that was unloaded when idle (or stopped): load it again.
                run = try await load(model, runID: unloaded.runID, strict: true) {
                    do {
                        return try await supervisor.resume(unloaded.runID)
                    } catch let error as LaunchError {
                        throw SchedulerError.unavailable("cannot start \(unloaded.name) again: \(error.message)")
                    }
                }
                logger.info("on-demand restart", metadata: ["model": "\(model)", "run": "\(unloaded.runID)"])
            } else {
                run = try await startNew(model)
            }
            held = run
            hold(run)
            let settled = try await supervisor.waitUntilSettled(run.runID, timeout: startTimeout)
            guard settled.state == .ready else {
                throw SchedulerError.unavailable(
                    "model \(model) did not become ready (\(settled.state.rawValue)\(settled.reason.map { ": \($0)" } ?? "")); see `modelctl logs \(settled.name)`"
                )
            }
            let waiters = starts.removeValue(forKey: key)?.waiters ?? 1
            hold(run, count: waiters - 1)
            return settled
        } catch {
            starts[key] = nil
            if let held { unhold(held.runID) }
            if error is SchedulerError { throw error }
            throw SchedulerError.unavailable("model \(model) did not become ready: \(error)")
        }
    }

    /// A pulled model started on its catalog entry's default engine, with the on-demand keep-alive.
    private func startNew(_ model: String) async throws -> RunInfo {
        guard let ref = try? ModelRef(parsing: model), let resolved = try? catalog.resolve(ref),
            let version = try await store.versions(source: resolved.source.rawValue, repo: resolved.repo).first(where: { $0.version.state == .ready }
            ),
            let path = version.version.path
        else {
            throw SchedulerError.notFound(
                "model \(model) is not running here and not pulled: `modelctl pull \(model)`, then `modelctl start \(model)`")
        }
        let engine = resolved.entry.flatMap { EngineKind(rawValue: $0.defaultEngine) } ?? .builtin
        let spec = LaunchSpec(engine: engine, modelPath: path, servedName: model)
        // The run gets a generated name (names cannot hold `/`); it answers to `model` as its served name.
        let request = RunRequest(
            id: RunRequest.newID(), name: nil, model: model, versionID: version.version.id, spec: spec, keepAlive: onDemandKeepAlive.seconds,
            onDemand: true)
        let run = try await load(model, runID: request.id!, strict: true) {
            do {
                return try await supervisor.start(request)
            } catch let error as LaunchError {
                throw SchedulerError.unavailable("cannot start \(model) on demand: \(error.message)")
            }
        }
        logger.info("on-demand start", metadata: ["model": "\(model)", "engine": "\(engine.rawValue)", "run": "\(run.runID)"])
        return run
    }

    /// Makes room for one more run and starts it with `start` (which returns once the supervisor lists the run).
    /// Its place is taken when it is admitted, before anything is awaited, and held for `runID` until the
    /// supervisor lists that run as loaded: no other start can take it meanwhile.
    /// - Parameter strict: throw ``SchedulerError/unavailable(_:)`` when no room can be made, rather than go over.
    private func load(_ model: String, runID: String, strict: Bool, start: () async throws -> RunInfo) async throws -> RunInfo {
        guard maxLoaded > 0 else { return try await start() }
        let evicted = try admit(model, strict: strict)
        admitted.insert(runID)
        defer { admitted.remove(runID) }
        let reason = "least recently used, unloaded to make room for \(model) (max_loaded_runs \(maxLoaded))"
        await withTaskGroup(of: Void.self) { group in
            for run in evicted {
                group.addTask { await self.unload(run, why: reason) }
            }
        }
        return try await start()
    }

    /// The runs to unload so that one more fits under the limit, marked as leaving. Loaded are the runs starting
    /// or ready that are not leaving, and the admitted starts whose run is not listed yet.
    private func admit(_ model: String, strict: Bool) throws -> [RunInfo] {
        let runs = supervisor.snapshot.filter { $0.state.isLoaded }
        let (admitted, maxLoaded) = (admitted, maxLoaded)
        return try book.withLock { book in
            let loaded = runs.filter { book.runs[$0.runID]?.leaving != true }
            let count = Set(loaded.map(\.runID)).union(admitted).count
            let excess = count + 1 - maxLoaded
            guard excess > 0 else { return [] }
            let now = ContinuousClock.now
            let evictable =
                loaded
                .filter { $0.onDemand && $0.state == .ready && book.runs[$0.runID]?.busy != true }
                .sorted { (book.runs[$0.runID]?.lastUsed ?? now) < (book.runs[$1.runID]?.lastUsed ?? now) }
            if strict && evictable.count < excess {
                throw SchedulerError.unavailable(
                    "cannot load \(model): \(count) runs are loaded or starting (max_loaded_runs \(maxLoaded)) and none is an idle on-demand run to unload; stop one with `modelctl stop`, or raise --max-loaded-runs"
                )
            }
            let chosen = Array(evictable.prefix(excess))
            for run in chosen {
                var activity = book.runs[run.runID] ?? Activity(run, now: now)
                activity.leaving = true
                Self.disarm(&activity)
                book.runs[run.runID] = activity
            }
            return chosen
        }
    }

    /// Holds a starting run for `count` waiting requests.
    private nonisolated func hold(_ run: RunInfo, count: Int = 1) {
        let now = ContinuousClock.now
        book.withLock { book in
            var activity = book.runs[run.runID] ?? Activity(run, now: now)
            activity.holds += count
            book.runs[run.runID] = activity
        }
    }

    private nonisolated func unhold(_ runID: String) {
        book.withLock { book in
            guard var activity = book.runs[runID] else { return }
            activity.holds = max(0, activity.holds - 1)
            if !activity.busy { arm(runID, &activity, in: &book) }
            book.runs[runID] = activity
        }
    }

    // MARK: Unloading

    /// Unloads the runs of `model` now; those in use (or still starting) are unloaded when their last request
    /// ends, as with a keep-alive of 0.
    /// - Throws: ``SchedulerError/notFound(_:)`` when no run answers to `model`.
    package func unload(_ model: String) async throws {
        let runs = supervisor.snapshot.filter { Self.matches($0, model) }
        guard !runs.isEmpty else { throw SchedulerError.notFound("no run of \(model) here: `modelctl ps` lists the runs") }
        let now = ContinuousClock.now
        let idle = runs.filter { $0.state.isLoaded }.filter { run in
            book.withLock { book in
                var activity = book.runs[run.runID] ?? Activity(run, now: now)
                defer { book.runs[run.runID] = activity }
                guard !activity.leaving else { return false }
                if activity.busy || run.state == .starting {
                    activity.requested = .seconds(0)
                    return false
                }
                activity.leaving = true
                Self.disarm(&activity)
                return true
            }
        }
        await withTaskGroup(of: Void.self) { group in
            for run in idle {
                group.addTask { await self.unload(run, why: "unloaded on request") }
            }
        }
    }

    /// Arms the keep-alive timer of an idle run; the caller holds the lock. A timer that wakes no later than
    /// this one would is kept: it arms again for the rest when it finds the run used since.
    private nonisolated func arm(_ runID: String, _ activity: inout Activity, in book: inout Book) {
        guard !activity.busy, !activity.leaving, activity.seenReady, !book.stopped, let seconds = activity.keepAlive else { return }
        let deadline = activity.lastUsed + .seconds(seconds)
        if let timer = activity.timer {
            guard deadline < timer.deadline else { return }
            timer.task.cancel()
        }
        book.timers += 1
        let id = book.timers
        let task = Task { [weak self] in
            guard (try? await Task.sleep(until: deadline, clock: .continuous)) != nil else { return }
            await self?.expire(runID, timer: id)
        }
        activity.timer = Timer(id: id, deadline: deadline, task: task)
    }

    private static func disarm(_ activity: inout Activity) {
        activity.timer?.task.cancel()
        activity.timer = nil
    }

    /// A keep-alive timer woke: the run is unloaded if it is idle and its keep-alive has passed since its last
    /// use; used since, it is armed again for the rest; busy, its last lease's release arms it again.
    private func expire(_ runID: String, timer: Int) async {
        let run = supervisor.snapshot.first { $0.runID == runID }
        let keepAlive = book.withLock { book -> Int? in
            guard var activity = book.runs[runID], activity.timer?.id == timer else { return nil }
            defer { book.runs[runID] = activity }
            activity.timer = nil
            guard run?.state == .ready, !activity.busy, !activity.leaving, !book.stopped, let seconds = activity.keepAlive else { return nil }
            guard ContinuousClock.now >= activity.lastUsed + .seconds(seconds) else {
                arm(runID, &activity, in: &book)
                return nil
            }
            activity.leaving = true
            return seconds
        }
        guard let run, let keepAlive else { return }
        await unload(run, why: keepAlive == 0 ? "its last request ended (keep_alive 0)" : "idle for \(keepAlive) s (keep_alive)")
    }

    /// Unloads a run marked as leaving: an on-demand run is forgotten (its log stays), an explicit one stopped.
    private func unload(_ run: RunInfo, why: String) async {
        let (supervisor, logger) = (supervisor, logger)
        // Its own task: a cancelled caller does not cut it short, and a start of the same model can wait for it.
        let task = Task {
            do {
                if run.onDemand {
                    try await supervisor.remove(run.runID)
                } else {
                    _ = try await supervisor.stop(run.runID)
                }
                logger.info("run unloaded", metadata: ["run": "\(run.runID)", "name": "\(run.name)", "model": "\(run.model)", "why": "\(why)"])
            } catch {
                logger.warning("cannot unload run \(run.name): \(error)")
            }
        }
        unloads[run.runID] = task
        await task.value
        unloads[run.runID] = nil
        book.withLock { book in
            if var activity = book.runs[run.runID], !activity.busy {
                Self.disarm(&activity)
                book.runs[run.runID] = nil
            }
        }
    }

    // MARK: Following the supervisor

    /// Notes the runs that became ready (their keep-alive starts) and forgets those no longer loaded.
    private nonisolated func observe(_ runs: [RunInfo]) {
        let now = ContinuousClock.now
        book.withLock { book in
            var loaded = Set<String>()
            for run in runs where run.state == .starting || run.state == .ready {
                loaded.insert(run.runID)
                var activity = book.runs[run.runID] ?? Activity(run, now: now)
                activity.runKeepAlive = run.keepAlive
                if run.state == .ready, !activity.seenReady {
                    activity.seenReady = true
                    if !activity.busy { activity.lastUsed = now }
                    arm(run.runID, &activity, in: &book)
                }
                book.runs[run.runID] = activity
            }
            for (id, var activity) in book.runs where !loaded.contains(id) && !activity.busy && !activity.leaving {
                Self.disarm(&activity)
                book.runs[id] = nil
            }
        }
    }

    /// Stops following the supervisor and every keep-alive timer (at daemon shutdown): no run is unloaded after.
    package nonisolated func shutdown() {
        book.withLock { book in
            book.stopped = true
            book.watcher?.cancel()
            for id in book.runs.keys {
                book.runs[id]?.timer?.task.cancel()
                book.runs[id]?.timer = nil
            }
        }
    }

    // MARK: Names

    /// The ready runs that answer to `model`.
    package static func readyRuns(_ model: String, in runs: [RunInfo]) -> [RunInfo] {
        runs.filter { $0.state == .ready && $0.endpoint != nil && matches($0, model) }
    }

    /// Whether `model` names this run: its name, its served name, or the model it was started with.
    package static func matches(_ run: RunInfo, _ model: String) -> Bool {
        sameName(run.name, model) || sameName(run.servedName, model) || sameName(run.model, model)
    }

    /// Whether two names are equal ignoring case: ASCII names byte by byte (every request compares its model
    /// with each run's names), others as Foundation compares them.
    package static func sameName(_ a: String, _ b: String) -> Bool {
        var a = a, b = b
        let ascii = a.withUTF8 { a in
            b.withUTF8 { b in
                guard !a.contains(where: { $0 >= 0x80 }), !b.contains(where: { $0 >= 0x80 }) else { return nil as Bool? }
                return a.count == b.count && zip(a, b).allSatisfy { lowered($0) == lowered($1) }
            }
        }
        return ascii ?? (a.caseInsensitiveCompare(b) == .orderedSame)
    }

    private static func lowered(_ byte: UInt8) -> UInt8 {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte
    }
}

extension RunScheduler: Service {
    /// Runs until the daemon shuts down, then stops the keep-alive timers (``shutdown()``).
    package nonisolated func run() async throws {
        try? await gracefulShutdown()
        shutdown()
    }
}
