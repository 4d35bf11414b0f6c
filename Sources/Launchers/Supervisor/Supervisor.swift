import CSpawn
import CoreMetrics
import Foundation
import Logging
import ModelStore
import Synchronization

/// Starts engines as supervised children, keeps them at their desired state, and stops them.
///
/// ```swift
/// let supervisor = try await Supervisor(store: store, dataDirectory: data, configuration: SupervisorConfiguration())
/// await supervisor.reconcile()                       // at start-up (or run a SupervisorService)
/// let run = try await supervisor.start(RunRequest(
///     model: "Qwen/Qwen2.5-0.5B-Instruct", versionID: version.id,
///     spec: LaunchSpec(engine: .vllm, modelPath: version.path, servedName: "qwen2.5:0.5b")))
/// let all = await supervisor.list()                  // [RunInfo]
/// let lines = try await supervisor.logs(run.runID, tail: 100)
/// for await line in try await supervisor.followLogs(run.name, tail: 10) { print(line) }
/// _ = try await supervisor.stop(run.name)            // desired = stopped
/// await supervisor.shutdown()                        // on daemon exit; desired states are kept
/// ```
///
/// Each engine runs in its own session and process group, forked by the one ``Spawner`` thread with
/// `PR_SET_PDEATHSIG(SIGKILL)`, its output piped into a rotated log. A run is probed until ready, then
/// watched; an unexpected exit or failed liveness restarts it with exponential backoff until the burst
/// limit fails it. Runs persist in the ``Store`` with their desired state: ``reconcile()`` at start-up stops
/// survivors of a previous daemon and starts again the runs that should be running. Rows are written without
/// the actor waiting for the store (in order, on the store's writer thread); each call of the API returns once
/// what it changed is written.
package actor Supervisor {
    package let configuration: SupervisorConfiguration
    let store: Store
    let dataDirectory: DataDirectory
    let logger: Logger
    let builder: CommandBuilder
    let ports: PortAllocator
    var runs: [String: ManagedRun] = [:] {
        didSet { publish() }
    }
    /// Every run as last published: read without a hop onto this actor (the gateway routes each request by it).
    private nonisolated let published = PublishedRuns()
    var reconciled = false
    var shuttingDown = false
    /// The shared `ollama serve` child, while any Ollama run needs it.
    var ollamaHost: OllamaHost?
    /// Engines restarted after a crash or a failed liveness probe, `modeld_engine_restarts_total{engine}`.
    let restartCounters: [EngineKind: CoreMetrics.Counter]

    /// Loads the stored runs; nothing is started or stopped before ``reconcile()``.
    /// - Throws: ``LaunchError`` when the store cannot be read or the log directory cannot be created.
    /// - Parameter metrics: where the restart counters go (the daemon passes its Prometheus factory).
    package init(
        store: Store, dataDirectory: DataDirectory, configuration: SupervisorConfiguration = SupervisorConfiguration(),
        logger: Logger = Logger(label: "modeld.supervisor"), metrics: any MetricsFactory = MetricsSystem.factory
    ) async throws {
        self.restartCounters = Dictionary(
            uniqueKeysWithValues: EngineKind.allCases.map { engine in
                (engine, CoreMetrics.Counter(label: "modeld_engine_restarts_total", dimensions: [("engine", engine.rawValue)], factory: metrics))
            })
        self.store = store
        self.dataDirectory = dataDirectory
        self.configuration = configuration
        self.logger = logger
        self.builder = CommandBuilder(
            dataDirectory: dataDirectory, engines: configuration.engines, baseEnvironment: configuration.baseEnvironment,
            ollama: configuration.ollama)
        self.ports = PortAllocator(range: configuration.portRange)
        do {
            try FileManager.default.createDirectory(at: dataDirectory.logs, withIntermediateDirectories: true)
        } catch {
            throw LaunchError(code: .logs, message: "cannot create the log directory \(dataDirectory.logs.path)", cause: error)
        }
        let records: [RunRecord]
        do {
            records = try await store.runs()
        } catch {
            throw LaunchError(code: .store, message: "cannot read the runs from the store", cause: error)
        }
        if configuration.childSubreaper {
            let error = cspawn_set_child_subreaper()
            if error != 0 { logger.warning("cannot become the child subreaper: \(String(cString: strerror(error)))") }
        }
        var loaded: [String: ManagedRun] = [:]
        for record in records {
            let spec = try? JSONDecoder().decode(LaunchSpec.self, from: Data(record.options.utf8))
            loaded[record.id] = ManagedRun(record: record, spec: spec, log: Self.makeLog(id: record.id, in: dataDirectory, configuration))
        }
        self.runs = loaded
        published.runs = loaded.values.sorted { ($0.record.createdAt, $0.record.id) < ($1.record.createdAt, $1.record.id) }.map(\.info)
    }

    static func makeLog(id: String, in dataDirectory: DataDirectory, _ configuration: SupervisorConfiguration) -> RunLog {
        RunLog(
            url: dataDirectory.logs.appending(path: "\(id).log"), maxBytes: configuration.logMaxBytes,
            keep: configuration.logFilesKept)
    }

    // MARK: - The daemon's API

    /// Starts a run: checks the engine is installed, allocates a port, spawns the engine and returns at
    /// once with the run `starting`; the supervisor then probes it until `ready`.
    /// - Throws: ``LaunchError``: the engine is not installed, the name is taken, no port is free, or the
    ///   engine could not be executed.
    package func start(_ request: RunRequest) async throws -> RunInfo {
        guard !shuttingDown else {
            throw LaunchError(code: .invalidSpec, message: "the daemon is shutting down: no new runs are started")
        }
        var spec = request.spec
        // A missing engine is the user's first error: report it before anything is recorded.
        _ = try builder.command(for: spec, port: configuration.portRange.lowerBound)
        if spec.engine == .ollama, spec.ollama == nil {
            throw LaunchError(code: .invalidSpec, message: "an Ollama run needs its model source (an Ollama name to pull, or a GGUF file)")
        }
        try checkModelFiles(spec)
        if spec.options.gpus == nil, GPUPlacement.usesGPUs(spec) {
            let gpus: [GPU]
            do {
                gpus = try await configuration.gpuInventory.read()
            } catch {
                logger.warning("cannot read the GPUs, so run \(request.name ?? request.model) is not placed: \(error)")
                gpus = []
            }
            // From here to recording the run nothing suspends: no other start can take the same GPUs meanwhile.
            if !gpus.isEmpty {
                let need = try MemoryNeed.estimate(spec).perHost(of: spec.options.multiNode?.nodes ?? 1)
                let chosen = try GPUPlacement.choose(
                    need: need, count: GPUPlacement.gpuCount(spec.options), gpus: gpus, held: heldGPUs(), run: request.name ?? request.model)
                spec.options.gpus = chosen.map(String.init).joined(separator: ",")
            }
        }
        let name = try runName(for: request)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let options = String(decoding: try encoder.encode(spec), as: UTF8.self)
        let id = request.id ?? RunRequest.newID()
        guard runs[id] == nil else {
            throw LaunchError(code: .invalidSpec, message: "a run with id \(id) exists already")
        }
        let record = RunRecord(
            id: id, name: name, versionID: request.versionID, model: request.model, engine: spec.engine.rawValue,
            options: options, state: .starting, desiredState: .running, keepAlive: request.keepAlive, onDemand: request.onDemand)
        let run = ManagedRun(record: record, spec: spec, log: Self.makeLog(id: id, in: dataDirectory, configuration))
        runs[id] = run
        run.record.updatedAt = Date()
        do {
            try await store.saveRun(run.record)
        } catch {
            if runs[id] === run { runs[id] = nil }
            throw LaunchError(code: .store, message: "cannot save run \(name) in the store", cause: error)
        }
        // Stopped, removed or shut down while the row was written: nothing to launch.
        guard runs[id] === run, run.record.desiredState == .running, !shuttingDown else { return run.info }
        run.log.note("run \(name) (\(id)): starting \(request.model) on \(spec.engine.displayName)")
        try await begin(run)
        await store.writesFinished()
        return run.info
    }

    /// Every run, oldest first.
    package func list() -> [RunInfo] {
        runs.values.sorted { ($0.record.createdAt, $0.record.id) < ($1.record.createdAt, $1.record.id) }.map(\.info)
    }

    /// Every run, oldest first, as of its last change of state: the same as ``list()`` without waiting for the
    /// actor, for the per-request path.
    package nonisolated var snapshot: [RunInfo] { published.runs }

    /// The runs after each change (a run added, removed or saved), oldest first, starting with the runs as they
    /// are now: the scheduler, the event stream and ``waitUntilSettled(_:timeout:)`` follow the runs through it.
    /// Each call is a subscriber of its own; the stream ends when the subscriber stops iterating it.
    /// - Parameter buffering: what is kept while the subscriber is busy: every change (the default, for
    ///   subscribers that compare each change with the one before), or only the newest
    ///   (`.bufferingNewest(1)`, for those that only want the current state).
    package nonisolated func changes(
        buffering: AsyncStream<[RunInfo]>.Continuation.BufferingPolicy = .unbounded
    ) -> AsyncStream<[RunInfo]> {
        published.subscribe(buffering: buffering)
    }

    /// Publishes the runs for ``snapshot``; called whenever a run is added, removed or saved.
    func publish() {
        published.runs = list()
    }

    /// The run with this id or name.
    /// - Throws: ``LaunchError`` with ``LaunchError/Code/runNotFound``.
    package func get(_ idOrName: String) throws -> RunInfo {
        try find(idOrName).info
    }

    /// Stops a run and records that it should stay stopped (also across daemon restarts).
    /// - Returns: the run, `stopped`.
    package func stop(_ idOrName: String) async throws -> RunInfo {
        let run = try find(idOrName)
        run.record.desiredState = .stopped
        if run.record.state.isLive { run.record.state = .stopping }
        persist(run)
        await halt(run, finalState: .stopped)
        await store.writesFinished()
        return run.info
    }

    /// Starts a stopped or failed run again with its recorded launch options (the gateway reloads a run
    /// it unloaded when idle this way). A run already starting or ready is returned as it is.
    /// - Throws: ``LaunchError``: no such run, or its options are unreadable, or the engine cannot start.
    package func resume(_ idOrName: String) async throws -> RunInfo {
        guard !shuttingDown else {
            throw LaunchError(code: .invalidSpec, message: "the daemon is shutting down: no new runs are started")
        }
        let run = try find(idOrName)
        if run.record.state == .starting || run.record.state == .ready { return run.info }
        guard run.process == nil, run.monitor == nil else {
            throw LaunchError(code: .nameInUse, message: "run \(run.record.name) is still stopping: try again in a moment")
        }
        guard let spec = run.spec else {
            throw LaunchError(code: .invalidSpec, message: "run \(run.record.name) has unreadable launch options: start it anew")
        }
        try checkModelFiles(spec)
        run.record.desiredState = .running
        try await startAgain(run, reason: nil, note: "starting again (\(spec.engine.displayName))")
        await store.writesFinished()
        return run.info
    }

    /// Starts a run that has no engine process with a fresh restart budget.
    private func startAgain(_ run: ManagedRun, reason: String?, note: String) async throws {
        run.restartTimes = []
        run.consecutiveFailures = 0
        run.record.state = .starting
        run.record.reason = reason
        run.record.exitStatus = nil
        persist(run)
        run.log.note(note)
        try await begin(run)
    }

    /// Stops a run if needed and forgets it, deleting its row (its log file stays).
    package func remove(_ idOrName: String) async throws {
        let run = try find(idOrName)
        run.record.desiredState = .stopped
        await halt(run, finalState: .stopped)
        run.log.finishFollowers()
        runs[run.record.id] = nil
        do {
            try await store.deleteRun(id: run.record.id)
        } catch {
            throw LaunchError(code: .store, message: "cannot delete run \(run.record.name) from the store", cause: error)
        }
    }

    /// The last `tail` lines of a run's log.
    package func logs(_ idOrName: String, tail: Int = 100) throws -> [String] {
        try find(idOrName).log.tail(max(0, tail))
    }

    /// The last `tail` lines of a run's log, then each new line as it is written.
    package func followLogs(_ idOrName: String, tail: Int = 100) throws -> AsyncStream<String> {
        try find(idOrName).log.follow(tail: max(0, tail))
    }

    /// The log file of a run.
    package func logFile(_ idOrName: String) throws -> URL {
        try find(idOrName).log.url
    }

    /// Waits until a run is `ready` (or ends `failed`/`stopped`), following its changes (``changes(buffering:)``).
    /// - Returns: the run as it then is; still `starting` when `timeout` passed first.
    /// - Throws: ``LaunchError`` with ``LaunchError/Code/runNotFound`` when there is no such run, or it is removed
    ///   meanwhile; `CancellationError` when the caller is cancelled.
    package nonisolated func waitUntilSettled(_ idOrName: String, timeout: Duration) async throws -> RunInfo {
        let changes = changes(buffering: .bufferingNewest(1))
        let deadline = ContinuousClock.now + timeout
        let settled = try await withThrowingTaskGroup(of: RunInfo?.self) { group in
            group.addTask {
                for await runs in changes {
                    guard let run = runs.first(where: { $0.runID == idOrName }) ?? runs.first(where: { $0.name == idOrName }) else {
                        throw LaunchError(code: .runNotFound, message: "no run named \(idOrName): see the running models with `modelctl ps`")
                    }
                    if run.state != .starting { return run }
                }
                return nil
            }
            group.addTask {
                try await Task.sleep(until: deadline, clock: .continuous)
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
        try Task.checkCancellation()
        if let settled { return settled }
        return try await get(idOrName)
    }

    /// At daemon start-up: stops engines that survived the previous daemon (a pid whose `/proc` start time
    /// matches the record), marks their runs stopped, and starts again the runs whose desired state is
    /// `running`. Runs once; later calls do nothing (docs/design/supervision.md, Reconciliation at start-up).
    package func reconcile() async {
        guard !reconciled else { return }
        reconciled = true
        // Runs this supervisor already manages (started before reconcile) are not survivors.
        let ordered = runs.values.filter { $0.process == nil && $0.monitor == nil }.sorted { $0.record.createdAt < $1.record.createdAt }
        let managed = Set(runs.values.compactMap { $0.process?.pid } + [ollamaHost?.process?.pid].compactMap { $0 })
        var stoppedGroups: Set<Int32> = managed
        for run in ordered {
            if let pid = run.record.pid, !stoppedGroups.contains(pid) {
                stoppedGroups.insert(pid)
                await stopSurvivor(run, pid: pid)
            }
            run.record.pid = nil
            run.record.processStartTime = nil
            if run.record.state.isLive { run.record.state = .stopped }
            persist(run)
        }
        for run in ordered where run.record.desiredState == .running && run.process == nil && run.monitor == nil {
            guard let spec = run.spec else {
                fail(run, reason: "cannot start again after the daemon restarted: its stored launch options are unreadable; start it anew")
                continue
            }
            do {
                try await startAgain(
                    run, reason: "started again after the daemon restarted",
                    note: "starting again after the daemon restarted (\(spec.engine.displayName))")
            } catch {
                logger.error("cannot start run \(run.record.name) again: \(error)")
            }
        }
        await store.writesFinished()
    }

    /// Stops every engine on daemon exit, keeping each run's desired state so the next daemon starts
    /// them again.
    package func shutdown() async {
        shuttingDown = true
        let live = runs.values.filter { $0.monitor != nil || $0.process != nil }
        await withTaskGroup(of: Void.self) { group in
            for run in live {
                let id = run.record.id
                group.addTask { await self.halt(id: id) }
            }
        }
        await stopOllamaHost()
        await store.writesFinished()
    }

    // MARK: - Internals

    func find(_ idOrName: String) throws -> ManagedRun {
        if let run = runs[idOrName] { return run }
        if let run = runs.values.first(where: { $0.record.name == idOrName }) { return run }
        throw LaunchError(code: .runNotFound, message: "no run named \(idOrName): see the running models with `modelctl ps`")
    }

    /// The model's files must be on disk before an engine is spawned for them.
    func checkModelFiles(_ spec: LaunchSpec) throws {
        var isDirectory: ObjCBool = false
        if spec.engine != .ollama, let path = spec.modelPath,
            !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) || !isDirectory.boolValue
        {
            throw LaunchError(code: .invalidSpec, message: "the model directory \(path) does not exist: pull the model again")
        }
        if case .gguf(let path, _, _) = spec.ollama, !FileManager.default.fileExists(atPath: path) {
            throw LaunchError(code: .invalidSpec, message: "the GGUF file \(path) does not exist: pull the model again")
        }
    }

    /// The GPUs live runs hold (index → run name): each run meant to be running holds the GPUs of its `gpus`.
    func heldGPUs() -> [Int: String] {
        var held: [Int: String] = [:]
        for run in runs.values where run.record.desiredState == .running {
            for index in run.spec.flatMap({ $0.options.gpus }).map(GPUPlacement.indices) ?? [] { held[index] = run.record.name }
        }
        return held
    }

    /// A free, valid name: the requested one, or `<model>-<engine>` made unique.
    func runName(for request: RunRequest) throws -> String {
        if let name = request.name {
            guard !name.isEmpty, name.count <= 64,
                name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) })
            else {
                throw LaunchError(code: .invalidSpec, message: "run name \"\(name)\" is invalid: use up to 64 letters, digits, '.', '_' or '-'")
            }
            if let existing = runs.values.first(where: { $0.record.name == name }) {
                guard existing.record.desiredState == .stopped, !existing.record.state.isLive, existing.process == nil else {
                    throw LaunchError(code: .nameInUse, message: "a run named \(name) is already running: stop it first, or choose another name")
                }
                // A stopped or failed run gives its name to the new one.
                runs[existing.record.id] = nil
                existing.log.finishFollowers()
                store.deleteRun(id: existing.record.id) { _ in }
            }
            return name
        }
        let base = request.model.split(separator: "/").last.map(String.init) ?? request.model
        let cleaned = String(base.lowercased().map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") ? $0 : "-" })
        let stem = "\(cleaned.prefix(48))-\(request.spec.engine.rawValue)"
        let taken = Set(runs.values.map(\.record.name))
        var candidate = stem
        var suffix = 2
        while taken.contains(candidate) {
            candidate = "\(stem)-\(suffix)"
            suffix += 1
        }
        return candidate
    }

    /// Launches the first attempt and hands the run to its monitor.
    func begin(_ run: ManagedRun) async throws {
        if run.engine == .ollama {
            try await beginOllama(run)
            return
        }
        let process: EngineProcess
        do {
            process = try await launch(run)
        } catch {
            fail(run, reason: "\(error)")
            throw error
        }
        let id = run.record.id
        run.monitor = Task { await self.supervise(id: id, process: process) }
    }

    /// Spawns the engine of `run` on a free port and records its pid.
    func launch(_ run: ManagedRun) async throws -> EngineProcess {
        guard let spec = run.spec else {
            throw LaunchError(code: .invalidSpec, message: "run \(run.record.name) has unreadable launch options")
        }
        let taken = Set(runs.values.filter { $0 !== run }.compactMap(\.record.port) + [ollamaHost?.port].compactMap { $0 })
        let port: Int?
        if !spec.servesHTTP {
            port = nil
        } else if let current = run.record.port, configuration.portRange.contains(current), !taken.contains(current),
            PortAllocator.isFree(current)
        {
            port = current
        } else {
            port = try ports.allocate(excluding: taken, startingAt: run.record.port)
        }
        // Reserve it before the first suspension, so a concurrent start picks another.
        run.record.port = port
        let command = try builder.command(for: spec, port: port ?? 0)
        let output = try run.log.makePipe()
        defer { close(output) }
        run.log.note("exec \(command.arguments.joined(separator: " "))")
        let pid = try await Spawner.shared.spawn(command, outputDescriptor: output)
        let process = EngineProcess(childPid: pid)
        run.process = process
        run.record.pid = pid
        run.record.processStartTime = process.startTime
        run.record.exitStatus = nil
        run.record.state = .starting
        persist(run)
        logger.info("run \(run.record.name): \(spec.engine.displayName) started, pid \(pid), \(port.map { "port \($0)" } ?? "no port")")
        return process
    }

    /// What ended an attempt.
    enum Outcome {
        case cancelled
        case exited(ExitStatus, readyFor: Duration?)
        case notReady(Duration)
        case unresponsive(Int)
    }

    /// The monitor loop: probe, watch, and restart with backoff until stopped or failed.
    func supervise(id: String, process first: EngineProcess) async {
        var process = first
        let policy = configuration.restart
        while true {
            let outcome = await watch(id: id, process: process)
            guard let run = runs[id], !Task.isCancelled else { return }
            if case .cancelled = outcome { return }
            let settings = configuration.settings(for: run.engine)
            let status: ExitStatus?
            switch outcome {
            case .exited:
                await process.killRemainingGroup()
                status = process.exitStatus
            default:
                let current = process
                status = await Task { await current.terminate(grace: settings.stopGrace) }.value.status
            }
            await run.log.waitUntilDrained(timeout: .seconds(1))
            let cause = describe(outcome, status: status)
            run.process = nil
            run.record.pid = nil
            run.record.processStartTime = nil
            run.record.exitStatus = status?.code
            guard !Task.isCancelled, run.record.desiredState == .running else { return }
            // A Python engine whose package is missing, or an engine refusing its command line, fails the same way on
            // every restart: say so now.
            if case .exited(_, readyFor: nil) = outcome {
                let contract = builder.contract(for: run.engine)
                let lines = run.log.recentLines(configuration.reasonLogLines)
                let name = run.engine.displayName
                if let missing = lines.last(where: { $0.contains("No module named") }) {
                    fail(
                        run,
                        reason: "\(name) is not installed for this Python (\(missing.trimmingCharacters(in: .whitespaces))): \(contract.installHint)")
                    return
                }
                if let refusal = lines.last(where: { line in contract.commandLineRefusals.contains { line.contains($0) } }) {
                    let quoted = refusal.trimmingCharacters(in: .whitespaces)
                    fail(run, reason: "\(name) refused its command line (\(quoted)); \(cause). Last log lines:\n" + lines.joined(separator: "\n"))
                    return
                }
            }

            let clock = ContinuousClock()
            let now = clock.now
            run.restartTimes.removeAll { now - $0 > policy.burstWindow }
            if run.restartTimes.count >= policy.burstLimit {
                let lines = run.log.recentLines(configuration.reasonLogLines)
                fail(
                    run,
                    reason:
                        "\(cause); it was restarted \(run.restartTimes.count) times within \(format(policy.burstWindow)), so modeld gave up. Last log lines:\n"
                        + lines.joined(separator: "\n"))
                return
            }
            if case .exited(_, let readyFor?) = outcome, readyFor >= policy.backoffCap {
                run.consecutiveFailures = 0
            }
            run.consecutiveFailures += 1
            let delay = policy.delay(attempt: run.consecutiveFailures)
            run.record.state = .starting
            run.record.reason = "\(cause); restarting in \(format(delay))"
            persist(run)
            run.log.note("\(cause); restarting in \(format(delay))")
            logger.warning("run \(run.record.name): \(cause); restarting in \(format(delay))")
            do {
                try await Task.sleep(for: delay)
            } catch {
                return
            }
            guard runs[id] === run, run.record.desiredState == .running, !Task.isCancelled else { return }
            run.restartTimes.append(clock.now)
            run.record.restarts += 1
            restartCounters[run.engine]?.increment()
            do {
                process = try await launch(run)
            } catch {
                fail(run, reason: "cannot restart the engine: \(error)")
                return
            }
        }
    }

    /// Probes an attempt until ready, then watches it until it ends.
    func watch(id: String, process: EngineProcess) async -> Outcome {
        guard let run = runs[id] else { return .cancelled }
        guard let port = run.record.port else { return await watchWorker(run, process: process) }
        let settings = configuration.settings(for: run.engine)
        let contract = builder.contract(for: run.engine)
        guard let readiness = try? HealthProbe(port: port, path: contract.readinessPath, timeout: configuration.probeTimeout),
            let liveness = try? HealthProbe(port: port, path: contract.livenessPath, timeout: configuration.probeTimeout)
        else { return .exited(.exited(-1), readyFor: nil) }
        let clock = ContinuousClock()
        let deadline = clock.now + settings.startTimeout
        var foreignListenerNoted = false
        while true {
            if Task.isCancelled { return .cancelled }
            if let status = process.exitStatus { return .exited(status, readyFor: nil) }
            if await readiness.check() {
                // Only our engine counts: another program may have bound the port between our check and its bind.
                guard ListenerOwner.isHeld(port: port, bySession: process.pid) == false else { break }
                if !foreignListenerNoted {
                    foreignListenerNoted = true
                    run.log.note("port \(port) answers, but not from this engine's processes: waiting for the engine itself")
                }
            }
            if Task.isCancelled { return .cancelled }
            if clock.now >= deadline { return .notReady(settings.startTimeout) }
            if let status = await process.waitForExit(timeout: configuration.readinessInterval) {
                return .exited(status, readyFor: nil)
            }
        }
        guard runs[id] === run, !Task.isCancelled else { return .cancelled }
        run.record.state = .ready
        run.record.reason = nil
        persist(run)
        run.log.note("ready: \(run.engine.displayName) answers on http://127.0.0.1:\(port)")
        logger.info("run \(run.record.name) is ready on port \(port)")
        let readyAt = clock.now
        var failures = 0
        while true {
            if let status = await process.waitForExit(timeout: configuration.livenessInterval) {
                return .exited(status, readyFor: clock.now - readyAt)
            }
            if Task.isCancelled { return .cancelled }
            if await liveness.check() {
                failures = 0
            } else {
                failures += 1
                if Task.isCancelled { return .cancelled }
                if failures >= configuration.livenessFailureThreshold { return .unresponsive(failures) }
            }
        }
    }

    /// Watches an engine without an HTTP port, a multi-node run's worker (docs/multi-node.md): it is ready once its
    /// process has run for ``SupervisorConfiguration/workerSettle`` (past its argument parsing and start-up checks),
    /// and lives as long as its process does.
    func watchWorker(_ run: ManagedRun, process: EngineProcess) async -> Outcome {
        if let status = await process.waitForExit(timeout: configuration.workerSettle) { return .exited(status, readyFor: nil) }
        guard runs[run.record.id] === run, !Task.isCancelled else { return .cancelled }
        run.record.state = .ready
        run.record.reason = nil
        persist(run)
        run.log.note("ready: the worker has run for \(format(configuration.workerSettle)); it serves through its head")
        logger.info("run \(run.record.name) is ready (a worker without a port)")
        let clock = ContinuousClock()
        let readyAt = clock.now
        guard let status = await process.waitForExit() else { return .cancelled }
        return .exited(status, readyFor: clock.now - readyAt)
    }

    func describe(_ outcome: Outcome, status: ExitStatus?) -> String {
        switch outcome {
        case .cancelled: return "stopped"
        case .exited(let status, let readyFor):
            return readyFor == nil ? "the engine exited while starting (\(status))" : "the engine exited unexpectedly (\(status))"
        case .notReady(let timeout):
            return "the engine did not become ready within \(format(timeout))"
        case .unresponsive(let failures):
            return "the engine failed \(failures) liveness probes in a row"
        }
    }

    /// Stops the monitor and the engine (SIGTERM to the group, grace, SIGKILL, reap, group check).
    /// - Parameter finalState: the state to record; nil keeps `failed` runs failed.
    func halt(_ run: ManagedRun, finalState: RunState? = nil) async {
        if let monitor = run.monitor {
            monitor.cancel()
            // An Ollama run's monitor may be in a long pull that cannot be interrupted: do not wait for it.
            if run.engine != .ollama { await monitor.value }
            run.monitor = nil
        }
        if run.engine == .ollama {
            await leaveOllama(run)
        } else if let process = run.process {
            if run.record.state.isLive {
                run.record.state = .stopping
                persist(run)
            }
            let grace = configuration.settings(for: run.engine).stopGrace
            run.log.note("stopping: SIGTERM to process group \(process.pid), SIGKILL after \(format(grace))")
            // A cancelled caller (a dropped HTTP request) must not cut the grace period short.
            let (status, gone) = await Task { await process.terminate(grace: grace) }.value
            if run.process === process { run.process = nil }
            run.record.exitStatus = status?.code
            run.log.note(
                "stopped (\(status.map { "\($0)" } ?? "status unknown"))" + (gone ? "" : "; some processes of group \(process.pid) did not go away"))
            if !gone { logger.error("run \(run.record.name): processes of group \(process.pid) remain after SIGKILL") }
        }
        run.record.pid = nil
        run.record.processStartTime = nil
        if let finalState {
            run.record.state = finalState
        } else if run.record.state != .failed {
            run.record.state = .stopped
        }
        persist(run)
        await run.log.waitUntilDrained(timeout: .seconds(1))
        run.log.closeFile()
    }

    func halt(id: String) async {
        guard let run = runs[id] else { return }
        await halt(run)
    }

    /// Records a run as failed for good (until started again).
    func fail(_ run: ManagedRun, reason: String) {
        run.record.state = .failed
        run.record.reason = reason
        run.record.pid = nil
        run.record.processStartTime = nil
        persist(run)
        run.log.note("failed: \(reason.split(separator: "\n").first ?? "")")
        logger.error("run \(run.record.name) failed: \(reason.split(separator: "\n").first ?? "")")
    }

    /// Stops an engine left behind by a previous daemon, if the recorded pid is still that engine.
    func stopSurvivor(_ run: ManagedRun, pid: Int32) async {
        let group = ProcessGroup(id: pid)
        let grace = configuration.settings(for: run.engine).stopGrace
        if let stat = ProcStat(pid: pid), stat.isRunning, stat.startTime == run.record.processStartTime, stat.processGroup == pid {
            run.log.note("an engine of the previous daemon is still running (pid \(pid)): stopping it")
            logger.warning("run \(run.record.name): stopping engine pid \(pid) left by the previous daemon")
            group.signal(SIGTERM)
            let clock = ContinuousClock()
            let deadline = clock.now + grace
            while group.hasRunningMembers, clock.now < deadline { await pause(.milliseconds(50)) }
            if group.hasRunningMembers { group.signal(SIGKILL) }
            let gone = await group.waitUntilGone(timeout: .seconds(5), leader: nil)
            run.log.note(gone ? "the previous daemon's engine is gone" : "processes of group \(pid) did not go away")
            return
        }
        // Another process now holds the pid (its start time differs): that group is not ours.
        if let stat = ProcStat(pid: pid), stat.isRunning { return }
        // The leader is gone, but helpers that outlived it may still hold its group. Only processes of its
        // session that started after it are ours.
        guard let startTime = run.record.processStartTime else { return }
        let leftovers = ProcStat.members(ofGroup: pid).filter { $0.session == pid && $0.startTime >= startTime && $0.isRunning }
        if !leftovers.isEmpty {
            run.log.note("killing \(leftovers.count) leftover processes of the previous daemon's engine (group \(pid))")
            group.signal(SIGKILL)
            _ = await group.waitUntilGone(timeout: .seconds(5), leader: nil)
        }
    }

    /// Writes the run's row without waiting for the store; failures are logged (the in-memory state stays
    /// authoritative).
    func persist(_ run: ManagedRun) {
        run.record.updatedAt = Date()
        publish()
        let (name, logger) = (run.record.name, logger)
        store.saveRun(run.record) { result in
            if case .failure(let error) = result {
                logger.error("\(LaunchError(code: .store, message: "cannot save run \(name) in the store", cause: error))")
            }
        }
    }
}

/// `90 s`, `1.5 s`, `250 ms`.
func format(_ duration: Duration) -> String {
    let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    if seconds < 1 { return "\(Int((seconds * 1000).rounded())) ms" }
    if seconds == seconds.rounded() { return "\(Int(seconds)) s" }
    return String(format: "%.1f s", seconds)
}

/// The runs as the supervisor last published them, and the subscribers to their changes.
final class PublishedRuns: Sendable {
    private struct State {
        var runs: [RunInfo] = []
        var subscribers: [Int: AsyncStream<[RunInfo]>.Continuation] = [:]
    }
    private let state = Mutex(State())
    private let nextID = Atomic(0)

    /// Setting tells every subscriber, in the order of the changes (the supervisor sets it from its actor).
    var runs: [RunInfo] {
        get { state.withLock { $0.runs } }
        set {
            // Yielded under the lock, so that a new subscriber's first element and the changes after it are in order.
            state.withLock { state in
                state.runs = newValue
                for subscriber in state.subscribers.values { subscriber.yield(newValue) }
            }
        }
    }

    /// A stream of the runs after each change, starting with the current ones.
    func subscribe(buffering: AsyncStream<[RunInfo]>.Continuation.BufferingPolicy) -> AsyncStream<[RunInfo]> {
        let (stream, continuation) = AsyncStream.makeStream(of: [RunInfo].self, bufferingPolicy: buffering)
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
        }
        state.withLock { state in
            state.subscribers[id] = continuation
            continuation.yield(state.runs)
        }
        return stream
    }

    deinit {
        for subscriber in state.withLock({ $0.subscribers.values }) { subscriber.finish() }
    }
}
