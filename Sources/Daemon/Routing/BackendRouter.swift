import Foundation
import Launchers
import Logging
import ModelStore
import ModeldAPI
import Synchronization

/// One backend that can answer a request for a model.
enum Backend: Sendable {
    /// A ready local run; its lease comes from ``RunScheduler/acquire(run:)``.
    case run(RunInfo)
    /// A local start on demand (``RunScheduler/acquire(_:keepAlive:prefer:)``): the model is pulled here, or may be.
    case onDemand(String)
    /// An upstream, with the model name it serves.
    case upstream(Upstream, model: String)

    /// Its name in metrics, logs and usage: `local:<run name>` or `upstream:<name>`.
    var name: String {
        switch self {
        case .run(let run): "local:\(run.name)"
        case .onDemand(let model): "local:\(model)"
        case .upstream(let upstream, _): upstream.backend
        }
    }

    var isLocal: Bool {
        if case .upstream = self { return false }
        return true
    }
}

/// The routing layer above ``RunScheduler`` (docs/gateway.md, Routing): it resolves a request's `model` to every
/// backend that serves it (ready local runs, a local start on demand, upstreams; through a model group's targets
/// when the name is a group) and orders them by the group's strategy or the default one. The gateway tries them in
/// that order, failing over before the first byte of a reply (``GatewayController``), and reports each attempt
/// here: the in-flight counts, the time to first token (for `latency`) and the failures that cool an upstream
/// down until a probe finds it answering again.
///
/// Local runs stay the scheduler's: their leases, on-demand starts and keep-alive; their in-flight counts are the
/// scheduler's leases. Reads take one short lock and never wait, so the gateway's fast path asks it too
/// (``servesLocallyOnly(_:)``).
final class BackendRouter: Sendable {
    /// The routing settings (README's configuration table).
    struct Settings: Sendable {
        var strategy: RoutingStrategy = .localFirst
        /// Attempts after the first, on other backends, before the gateway gives up.
        var maxFailovers = 2
        /// Failures within ``failureWindow`` that cool an upstream down.
        var failuresToCool = 3
        var failureWindow: Duration = .seconds(60)
        /// How long a cooled upstream waits before each probe.
        var cooldown: Duration = .seconds(30)
        /// How often upstreams with `discover` are listed again.
        var discoveryInterval: Duration = .seconds(300)
    }

    /// An upstream's health as listed.
    struct HealthInfo {
        var state: String
        var inFlight: Int
        /// Seconds, the moving average of the time to first token.
        var latency: Double?
    }

    private struct Health {
        var failures: [ContinuousClock.Instant] = []
        /// No traffic until a probe succeeds.
        var cooling = false
        var inFlight = 0
        /// EWMA of the time to first token, in seconds.
        var latency: Double?
    }

    private struct State {
        var upstreams: [String: Upstream] = [:]
        /// By lowercased name.
        var groups: [String: ModelGroupRecord] = [:]
        /// Lowercased names that an enabled upstream serves.
        var upstreamModels: Set<String> = []
        var health: [String: Health] = [:]
        var turns: [String: Int] = [:]
        /// Smooth weighted round-robin's current weights, by group and backend.
        var weights: [String: [String: Int]] = [:]
        var probes: [String: Task<Void, Never>] = [:]
    }

    let settings: Settings
    let scheduler: RunScheduler
    let store: Store
    let metrics: DaemonMetrics
    let logger: Logger
    /// Where upstream keys named by environment variable are read.
    let environment: [String: String]
    /// Lists an upstream's models (the probe of a cooled upstream, discovery, `test`).
    let lister: @Sendable (Upstream) async -> UpstreamTestResult
    private let state = Mutex(State())
    /// True once any upstream or group exists: until then every request is the scheduler's alone.
    private let routed = Atomic(false)

    init(
        settings: Settings, scheduler: RunScheduler, store: Store, metrics: DaemonMetrics, logger: Logger, environment: [String: String],
        lister: @escaping @Sendable (Upstream) async -> UpstreamTestResult
    ) {
        self.settings = settings
        self.scheduler = scheduler
        self.store = store
        self.metrics = metrics
        self.logger = logger
        self.environment = environment
        self.lister = lister
    }

    // MARK: Configuration

    /// Reads the upstreams and groups from the store again (at start-up and after each change through the API);
    /// keys are read again from their variables and files.
    func reload() async throws {
        let upstreams = try await store.upstreams().map { Upstream($0, environment: environment) }
        let groups = try await store.modelGroups()
        state.withLock { state in
            state.upstreams = Dictionary(uniqueKeysWithValues: upstreams.map { ($0.name, $0) })
            state.groups = Dictionary(groups.map { ($0.name.lowercased(), $0) }, uniquingKeysWith: { first, _ in first })
            state.upstreamModels = Set(upstreams.filter(\.record.enabled).flatMap { $0.record.servedModels.map { $0.lowercased() } })
            for name in state.health.keys where !upstreams.contains(where: { $0.backend == name }) {
                state.health[name] = nil
                state.probes.removeValue(forKey: name)?.cancel()
            }
        }
        routed.store(!upstreams.isEmpty || !groups.isEmpty, ordering: .relaxed)
        for upstream in upstreams {
            metrics.setBackendUp(upstream.backend, up: upstream.record.enabled && !isCooling(upstream.backend))
        }
    }

    /// Every upstream, by name.
    var upstreams: [Upstream] {
        state.withLock { $0.upstreams.values.sorted { $0.name < $1.name } }
    }

    func upstream(_ name: String) -> Upstream? {
        state.withLock { $0.upstreams[name] }
    }

    func health(_ backend: String) -> HealthInfo {
        state.withLock { state in
            let health = state.health[backend] ?? Health()
            return HealthInfo(state: health.cooling ? "cooling" : "up", inFlight: health.inFlight, latency: health.latency)
        }
    }

    /// Whether a request for `model` is the scheduler's alone (no group names it, no upstream serves it): then the
    /// gateway's fast path may take it. One atomic load while no upstream or group exists.
    func servesLocallyOnly(_ model: String) -> Bool {
        guard routed.load(ordering: .relaxed) else { return true }
        let key = model.lowercased()
        return state.withLock { $0.groups[key] == nil && !$0.upstreamModels.contains(key) }
    }

    // MARK: Choosing

    /// The backends for `model`, in the order to try them: resolved through its group's targets (or the name
    /// itself), ordered by the group's strategy (or the default); cooled, disabled and full upstreams are left out.
    func plan(_ model: String) -> [Backend] {
        let runs = scheduler.supervisor.snapshot
        return state.withLock { state -> [Backend] in
            let group = state.groups[model.lowercased()]
            let targets = group.map { $0.targets.isEmpty ? [model] : $0.targets } ?? [model]
            var local: [Backend] = []
            var onDemand: [Backend] = []
            var remote: [Backend] = []
            for target in targets {
                let ready = RunScheduler.readyRuns(target, in: runs)
                local += ready.map(Backend.run)
                if ready.isEmpty { onDemand.append(.onDemand(target)) }
                for upstream in state.upstreams.values.sorted(by: { $0.name < $1.name }) where upstream.record.enabled {
                    guard let served = upstream.serves(target) else { continue }
                    let health = state.health[upstream.backend] ?? Health()
                    if health.cooling { continue }
                    if let limit = upstream.record.maxConcurrency, health.inFlight >= limit { continue }
                    remote.append(.upstream(upstream, model: served))
                }
            }
            let strategy = group?.strategy.flatMap(RoutingStrategy.init(rawValue:)) ?? settings.strategy
            let key = group?.name.lowercased() ?? model.lowercased()
            return order(local: local, onDemand: onDemand, remote: remote, strategy: strategy, key: key, state: &state)
        }
    }

    private func order(local: [Backend], onDemand: [Backend], remote: [Backend], strategy: RoutingStrategy, key: String, state: inout State)
        -> [Backend]
    {
        let candidates = local + remote
        let (scheduler, health) = (scheduler, state.health)
        func inFlight(_ backend: Backend) -> Int {
            if case .run(let run) = backend { return scheduler.inFlight(run.runID) }
            return health[backend.name]?.inFlight ?? 0
        }
        let ordered: [Backend]
        switch strategy {
        case .localFirst:
            return local.stableSorted { inFlight($0) < inFlight($1) } + onDemand + remote.stableSorted { Self.priority($0) < Self.priority($1) }
        case .priority:
            ordered = candidates.stableSorted { Self.priority($0) < Self.priority($1) }
        case .weighted:
            ordered = weighted(candidates, key: key, state: &state)
        case .roundRobin:
            guard !candidates.isEmpty else { return onDemand }
            let turn = state.turns[key, default: 0]
            state.turns[key] = turn &+ 1
            let start = turn % candidates.count
            ordered = Array(candidates[start...] + candidates[..<start])
        case .leastBusy:
            ordered = candidates.stableSorted { inFlight($0) < inFlight($1) }
        case .latency:
            // Untried backends first, so that each gets measured.
            let health = state.health
            let latency = { (backend: Backend) in health[backend.name]?.latency ?? 0 }
            ordered = candidates.stableSorted { latency($0) < latency($1) }
        case .cost:
            ordered = candidates.stableSorted { Self.cost($0) < Self.cost($1) }
        }
        // A local start is the last resort when the strategy ranks backends that are up now.
        return ordered + onDemand
    }

    /// Smooth weighted round-robin: each backend's current weight grows by its weight, the largest is chosen and
    /// loses the total. Over `sum(weights)` requests each backend is first `weight` times, evenly spread. The rest
    /// follow by weight, for failover.
    private func weighted(_ candidates: [Backend], key: String, state: inout State) -> [Backend] {
        guard !candidates.isEmpty else { return [] }
        var current = state.weights[key] ?? [:]
        let weights = candidates.map(Self.weight)
        let total = weights.reduce(0, +)
        guard total > 0 else { return candidates }
        var best = 0
        for (index, backend) in candidates.enumerated() {
            current[backend.name, default: 0] += weights[index]
            if current[backend.name]! > current[candidates[best].name]! { best = index }
        }
        current[candidates[best].name]! -= total
        state.weights[key] = current.filter { name, _ in candidates.contains { $0.name == name } }
        var rest = candidates
        let first = rest.remove(at: best)
        return [first] + rest.stableSorted { Self.weight($0) > Self.weight($1) }
    }

    private static func priority(_ backend: Backend) -> Int {
        if case .upstream(let upstream, _) = backend { return upstream.record.priority }
        return 0
    }

    private static func weight(_ backend: Backend) -> Int {
        if case .upstream(let upstream, _) = backend { return upstream.record.weight }
        return 1
    }

    private static func cost(_ backend: Backend) -> Double {
        if case .upstream(let upstream, _) = backend { return upstream.record.costIn + upstream.record.costOut }
        return 0
    }

    // MARK: Attempts

    /// An attempt on an upstream begins (its in-flight count).
    func began(_ backend: String) {
        state.withLock { $0.health[backend, default: Health()].inFlight += 1 }
    }

    /// An attempt on an upstream ended.
    func ended(_ backend: String) {
        state.withLock { state in
            guard var health = state.health[backend] else { return }
            health.inFlight = max(0, health.inFlight - 1)
            state.health[backend] = health
        }
    }

    /// The first token came after `duration` (a stream's first chunk, or a whole reply): the EWMA moves towards it.
    func firstToken(_ backend: String, after duration: Duration) {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        state.withLock { state in
            var health = state.health[backend] ?? Health()
            health.latency = health.latency.map { $0 + Self.smoothing * (seconds - $0) } ?? seconds
            state.health[backend] = health
        }
    }

    /// The weight of the newest sample in the moving average of the time to first token.
    static let smoothing = 0.3

    /// An attempt on an upstream failed before its first byte: after ``Settings/failuresToCool`` failures within
    /// ``Settings/failureWindow`` it is cooled down (no traffic) and probed every ``Settings/cooldown`` until its
    /// listing answers.
    func failed(_ upstream: Upstream) {
        let now = ContinuousClock.now
        let cooled = state.withLock { state -> Bool in
            var health = state.health[upstream.backend] ?? Health()
            defer { state.health[upstream.backend] = health }
            health.failures = health.failures.filter { now - $0 < settings.failureWindow } + [now]
            guard !health.cooling, health.failures.count >= settings.failuresToCool else { return false }
            health.cooling = true
            health.failures = []
            return true
        }
        guard cooled else { return }
        logger.warning(
            "upstream cooled down",
            metadata: ["backend": "\(upstream.backend)", "failures": "\(settings.failuresToCool)", "cooldown": "\(settings.cooldown)"])
        metrics.setBackendUp(upstream.backend, up: false)
        let task = Task { [weak self] in
            guard let self else { return }
            await self.probe(upstream.name)
        }
        state.withLock { $0.probes[upstream.backend] = task }
    }

    func isCooling(_ backend: String) -> Bool {
        state.withLock { $0.health[backend]?.cooling == true }
    }

    /// Waits out the cooldown and probes the upstream, again until it answers; then it gets traffic again.
    private func probe(_ name: String) async {
        while !Task.isCancelled {
            guard (try? await Task.sleep(for: settings.cooldown)) != nil, let upstream = upstream(name) else { return }
            let result = await lister(upstream)
            if result.ok {
                state.withLock { state in
                    state.health[upstream.backend]?.cooling = false
                    state.health[upstream.backend]?.failures = []
                    state.probes[upstream.backend] = nil
                }
                metrics.setBackendUp(upstream.backend, up: upstream.record.enabled)
                logger.notice("upstream answers again", metadata: ["backend": "\(upstream.backend)"])
                return
            }
            logger.info("upstream probe failed", metadata: ["backend": "\(upstream.backend)", "error": "\(result.error ?? "")"])
        }
    }

    /// Lists the models of every enabled upstream with `discover` and records them; the service does it every
    /// ``Settings/discoveryInterval``.
    func discover() async {
        for upstream in upstreams where upstream.record.discover && upstream.record.enabled {
            let result = await lister(upstream)
            guard result.ok else {
                logger.warning("cannot list the models of \(upstream.backend): \(result.error ?? "status \(result.status ?? 0)")")
                continue
            }
            if result.models != upstream.record.discovered {
                _ = try? await store.setDiscovered(upstream.name, models: result.models)
                try? await reload()
            }
        }
    }

    /// Stops the probes (at shutdown).
    func shutdown() {
        state.withLock { state in
            for task in state.probes.values { task.cancel() }
            state.probes = [:]
        }
    }
}

extension Array {
    /// Sorted by `less`, keeping the order of equal elements.
    func stableSorted(by less: (Element, Element) -> Bool) -> [Element] {
        enumerated().sorted { less($0.element, $1.element) || (!less($1.element, $0.element) && $0.offset < $1.offset) }.map(\.element)
    }
}
