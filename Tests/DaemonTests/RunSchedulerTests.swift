import Catalog
import Foundation
import Launchers
import ModelStore
import ModeldAPI
import Synchronization
import Testing

@testable import Daemon

/// The run scheduler on real fake-engine processes (playing the built-in engine) under the daemon's supervisor,
/// with pulled versions recorded in a real store.
@Suite("Run scheduler: leases, on-demand starts, the loaded-runs limit, keep-alive")
struct RunSchedulerTests {
    /// A daemon context whose built-in engine is the fake engine, with `models` pulled (`acme/m0`, ...), and a
    /// model directory to run.
    static func daemon(maxLoaded: Int = 0, keepAlive: String = "5m", models: Int = 0) async throws -> (TestDaemon, String) {
        let daemon = try await TestDaemon(environment: [
            "MODELD_BUILTIN_COMMAND": productsDirectory.appending(path: "fake-engine").path,
            "MODELD_MAX_LOADED_RUNS": String(maxLoaded), "MODELD_ON_DEMAND_KEEP_ALIVE": keepAlive,
        ])
        let model = daemon.root.appending(path: "model")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        let store = daemon.context.store
        for index in 0..<models {
            let version = try await store.beginVersion(
                source: "huggingface", repo: "acme/m\(index)", revision: "main", commit: String(repeating: "\(index)", count: 40),
                path: model.path, totalBytes: 0)
            _ = try await store.completeVersion(id: version.version.id!, files: [])
        }
        return (daemon, model.path)
    }

    /// An explicit run of `model` on the fake engine, ready.
    static func start(_ daemon: TestDaemon, path: String, name: String, model: String? = nil, keepAlive: Int? = nil) async throws -> RunInfo {
        let spec = LaunchSpec(engine: .builtin, modelPath: path, servedName: name)
        let run = try await daemon.context.scheduler.start(RunRequest(name: name, model: model ?? name, spec: spec, keepAlive: keepAlive))
        let ready = try await daemon.context.supervisor.waitUntilSettled(run.runID, timeout: .seconds(30))
        #expect(ready.state == .ready, "\(ready.reason ?? "")")
        return ready
    }

    static func loaded(_ runs: [RunInfo]) -> [RunInfo] {
        runs.filter { $0.state == .starting || $0.state == .ready }
    }

    @Test(
        "concurrent on-demand starts never load more runs than max_loaded_runs, at any change; the one without room gets 503; released runs make room, least recently used first"
    )
    func concurrentOnDemandStarts() async throws {
        let limit = 2
        let (daemon, _) = try await Self.daemon(maxLoaded: limit, models: 3)
        let (supervisor, scheduler) = (daemon.context.supervisor, daemon.context.scheduler)
        let watch = LoadedWatch(supervisor)
        let outcomes = await withTaskGroup(of: (String, Result<RunLease, any Error>).self) { group in
            for index in 0..<3 {
                group.addTask {
                    let model = "acme/m\(index)"
                    do {
                        return (model, .success(try await scheduler.acquire(model)))
                    } catch {
                        return (model, .failure(error))
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        // The leases are held until here: no run could be evicted for the third start.
        let leases = outcomes.compactMap { try? $0.1.get() }
        #expect(leases.count == limit, "\(outcomes)")
        for case (let model, .failure(let error)) in outcomes {
            guard case SchedulerError.unavailable(let message)? = error as? SchedulerError else {
                Issue.record("\(model): \(error)")
                continue
            }
            #expect(message.contains("max_loaded_runs \(limit)"), "\(message)")
        }
        #expect(leases.allSatisfy { $0.run.state == .ready && $0.run.onDemand })

        // Released, the older first: the third model evicts the least recently used.
        let ordered = leases.sorted { $0.run.model < $1.run.model }
        for lease in ordered { lease.release() }
        let third = try #require(outcomes.first { (try? $0.1.get()) == nil }?.0)
        let lease = try await scheduler.acquire(third)
        let ids = Set(Self.loaded(supervisor.snapshot).map(\.runID))
        #expect(!ids.contains(ordered[0].run.runID) && ids.contains(ordered[1].run.runID) && ids.contains(lease.run.runID))
        lease.release()
        await supervisor.shutdown()
        let most = await watch.stop()
        #expect(most <= limit, "\(most) runs were loaded at once (max_loaded_runs \(limit))")
    }

    @Test("with max_loaded_runs 1 and an idle run to evict, six concurrent on-demand starts load one run at a time; the rest get 503")
    func concurrentStartsWhileEvicting() async throws {
        let (daemon, path) = try await Self.daemon(maxLoaded: 1, models: 6)
        let (supervisor, scheduler) = (daemon.context.supervisor, daemon.context.scheduler)
        // The limit is reached by an idle on-demand run: the first start admitted unloads it, which takes a while.
        let idle = try await supervisor.start(
            RunRequest(
                name: "idle", model: "idle", spec: LaunchSpec(engine: .builtin, modelPath: path, servedName: "idle"), keepAlive: 300, onDemand: true))
        #expect(try await supervisor.waitUntilSettled(idle.runID, timeout: .seconds(30)).state == .ready)
        let watch = LoadedWatch(supervisor)
        let errors = await withTaskGroup(of: (any Error)?.self) { group in
            for index in 0..<6 {
                group.addTask {
                    do {
                        try await scheduler.acquire("acme/m\(index)").release()
                        return nil
                    } catch {
                        return error
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let refused = errors.compactMap { $0 }
        #expect(refused.count < 6)
        for error in refused {
            guard case .unavailable? = error as? SchedulerError else {
                Issue.record("\(error)")
                continue
            }
        }
        #expect(!supervisor.snapshot.contains { $0.runID == idle.runID }, "the idle run was not evicted")
        await supervisor.shutdown()
        let most = await watch.stop()
        #expect(most <= 1, "\(most) runs were loaded at once (max_loaded_runs 1)")
    }

    @Test("a lease keeps its run from eviction: an on-demand start is refused, an explicit one goes over the limit")
    func leaseBlocksEviction() async throws {
        let (daemon, path) = try await Self.daemon(maxLoaded: 1, models: 2)
        let (supervisor, scheduler) = (daemon.context.supervisor, daemon.context.scheduler)
        let first = try await scheduler.acquire("acme/m0")
        await #expect(throws: SchedulerError.self) { try await scheduler.acquire("acme/m1") }
        // Explicit starts only evict idle on-demand runs, and are not refused for the limit.
        let pinned = try await Self.start(daemon, path: path, name: "pinned")
        #expect(Set(Self.loaded(supervisor.snapshot).map(\.runID)) == [first.run.runID, pinned.runID])

        // Released, the on-demand run could make room, but not enough while the explicit run is over the limit
        // (an explicit run is never evicted): refused, and nothing is unloaded for it.
        first.release()
        await #expect(throws: SchedulerError.self) { try await scheduler.acquire("acme/m1") }
        #expect(supervisor.snapshot.first { $0.runID == first.run.runID }?.state == .ready)
        #expect(supervisor.snapshot.first { $0.runID == pinned.runID }?.state == .ready)
        _ = try await supervisor.stop(pinned.runID)
        let second = try await scheduler.acquire("acme/m1")
        #expect(second.run.model == "acme/m1")
        #expect(!supervisor.snapshot.contains { $0.runID == first.run.runID }, "the idle on-demand run was not evicted")
        second.release()
        await supervisor.shutdown()
    }

    @Test(
        "keep-alive timers: a run is unloaded when its keep-alive has passed since its last lease ended, never while leased; an unloaded explicit run comes back when named"
    )
    func keepAliveTimers() async throws {
        let (daemon, path) = try await Self.daemon(keepAlive: "1s", models: 1)
        let (supervisor, scheduler) = (daemon.context.supervisor, daemon.context.scheduler)
        let lease = try await scheduler.acquire("acme/m0")
        let run = lease.run
        let pid = try #require(run.pid)
        #expect(run.keepAlive == 1 && run.onDemand)
        // Twice its keep-alive passes while the lease is held (time passing, not a wait for an event): still loaded.
        try await Task.sleep(until: .now + .seconds(2), clock: .continuous)
        #expect(supervisor.snapshot.first { $0.runID == run.runID }?.state == .ready, "unloaded while leased")
        #expect(await scheduler.expiresAt(run.runID).map { $0.timeIntervalSinceNow > 0.5 } == true)

        let released = ContinuousClock.now
        lease.release()
        #expect(try await waitForRuns(supervisor) { runs in !runs.contains { $0.runID == run.runID } }, "not unloaded after its keep-alive")
        #expect(ContinuousClock.now - released >= .milliseconds(900), "unloaded before its keep-alive passed")
        // The supervisor forgets a run once its engine has been stopped and reaped.
        #expect(!isAlive(pid), "the unloaded engine \(pid) is still alive")

        // An explicit run with a keep-alive is stopped (not forgotten) when idle, and a request naming it starts it again.
        let explicit = try await Self.start(daemon, path: path, name: "explicit", keepAlive: 1)
        #expect(try await waitForRuns(supervisor) { runs in runs.contains { $0.runID == explicit.runID && $0.state == .stopped } })
        let again = try await scheduler.acquire("explicit")
        #expect(again.run.runID == explicit.runID && again.run.state == .ready)
        again.release()
        await supervisor.shutdown()
    }

    @Test("a run used again before its keep-alive passed stays loaded for its keep-alive after that use (its timer arms again for the rest)")
    func keepAliveRearms() async throws {
        let (daemon, _) = try await Self.daemon(models: 1)
        let (supervisor, scheduler) = (daemon.context.supervisor, daemon.context.scheduler)
        let first = try await scheduler.acquire("acme/m0", keepAlive: .seconds(3))
        first.release()
        // A second of the three passes (time passing, not a wait for an event), then the run is used again.
        try await Task.sleep(until: .now + .seconds(1), clock: .continuous)
        let second = try await scheduler.acquire("acme/m0", keepAlive: .seconds(3))
        #expect(second.run.runID == first.run.runID)
        let used = ContinuousClock.now
        second.release()
        #expect(try await waitForRuns(supervisor) { runs in !runs.contains { $0.runID == first.run.runID } })
        #expect(ContinuousClock.now - used >= .milliseconds(2900), "unloaded \(ContinuousClock.now - used) after its last use")
        await supervisor.shutdown()
    }

    @Test("a request's keep-alive overrides the run's: 0 unloads the run when its last lease ends, never keeps it")
    func requestKeepAlive() async throws {
        let (daemon, _) = try await Self.daemon(models: 2)
        let (supervisor, scheduler) = (daemon.context.supervisor, daemon.context.scheduler)
        let kept = try await scheduler.acquire("acme/m1", keepAlive: .never)
        kept.release()
        #expect(await scheduler.expiresAt(kept.run.runID) == nil)
        #expect(await scheduler.lastUsed(kept.run.runID) != nil)

        let first = try await scheduler.acquire("acme/m0")
        let expires = try #require(await scheduler.expiresAt(first.run.runID))
        #expect(abs(expires.timeIntervalSinceNow - 300) < 30, "\(expires)")
        let second = try await scheduler.acquire("acme/m0", keepAlive: .seconds(0))
        #expect(second.run.runID == first.run.runID)
        second.release()
        // Still leased by the first request: not unloaded until that ends too.
        #expect(supervisor.snapshot.first { $0.runID == first.run.runID }?.state == .ready)
        first.release()
        #expect(try await waitForRuns(supervisor) { runs in !runs.contains { $0.runID == first.run.runID } })
        #expect(supervisor.snapshot.first { $0.runID == kept.run.runID }?.state == .ready)

        // unload(_:) unloads a model's runs at once.
        try await scheduler.unload("acme/m1")
        #expect(!supervisor.snapshot.contains { $0.runID == kept.run.runID })
        await #expect(throws: SchedulerError.self) { try await scheduler.unload("acme/m1") }
        await supervisor.shutdown()
    }

    @Test("least busy: leases go to the run with the fewest; `prefer` narrows the choice when it can; a model nobody has is not found")
    func leastBusy() async throws {
        let (daemon, path) = try await Self.daemon()
        let scheduler = daemon.context.scheduler
        let first = try await Self.start(daemon, path: path, name: "first", model: "acme/tiny")
        let second = try await Self.start(daemon, path: path, name: "second", model: "acme/tiny")
        let a = try #require(scheduler.acquireReady("ACME/tiny"))
        let b = try #require(scheduler.acquireReady("acme/tiny"))
        let c = try #require(scheduler.acquireReady("acme/tiny"))
        #expect([a, b, c].map(\.run.runID) == [first.runID, second.runID, first.runID])
        // Released once however often release() is called: first has 0 leases again, second 1.
        a.release()
        a.release()
        c.release()
        let d = try #require(scheduler.acquireReady("acme/tiny"))
        let g = try #require(scheduler.acquireReady("acme/tiny"))
        let h = try #require(scheduler.acquireReady("acme/tiny"))
        #expect([d, g, h].map(\.run.runID) == [first.runID, first.runID, second.runID])
        let e = try await scheduler.acquire("acme/tiny", prefer: { $0.name == "second" })
        #expect(e.run.runID == second.runID, "prefer is honoured even when that run is busier")
        let f = try await scheduler.acquire("second")
        #expect(f.run.runID == second.runID, "a run's own name")
        for lease in [b, d, g, h, e, f] { lease.release() }
        #expect(scheduler.acquireReady("acme/other") == nil)
        await #expect(throws: SchedulerError.self) { try await scheduler.acquire("acme/other") }
        await daemon.context.supervisor.shutdown()
    }
}

/// The most runs loaded at once, as the supervisor published them at every change.
final class LoadedWatch: Sendable {
    private struct State {
        var most = 0
        var last: [RunInfo] = []
        /// What ``stop()`` waits to have seen.
        var target: [RunInfo]?
        var done: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())
    private let supervisor: Supervisor

    init(_ supervisor: Supervisor) {
        self.supervisor = supervisor
        let changes = supervisor.changes()
        Task { [self] in
            for await runs in changes { seen(runs) }
        }
    }

    private func seen(_ runs: [RunInfo]) {
        let done = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.most = max(state.most, RunSchedulerTests.loaded(runs).count)
            state.last = runs
            guard runs == state.target else { return nil }
            defer { state.done = nil }
            return state.done
        }
        done?.resume()
    }

    /// Once every change so far has been seen (call it when nothing changes any more, after the supervisor's
    /// shutdown): the most runs seen loaded at once.
    func stop() async -> Int {
        let final = supervisor.snapshot
        await withCheckedContinuation { continuation in
            let seen = state.withLock { state in
                if state.last == final { return true }
                state.target = final
                state.done = continuation
                return false
            }
            if seen { continuation.resume() }
        }
        return state.withLock { $0.most }
    }
}

/// Waits until the supervisor's runs satisfy `condition`, following its changes.
/// - Returns: false when `timeout` passed first.
func waitForRuns(_ supervisor: Supervisor, timeout: Duration = .seconds(30), _ condition: @escaping @Sendable ([RunInfo]) -> Bool) async throws
    -> Bool
{
    let changes = supervisor.changes(buffering: .bufferingNewest(1))
    return try await withThrowingTaskGroup(of: Bool.self) { group in
        group.addTask {
            for await runs in changes where condition(runs) { return true }
            return false
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return false
        }
        defer { group.cancelAll() }
        return try await group.next() ?? false
    }
}
