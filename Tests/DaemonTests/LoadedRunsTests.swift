import Catalog
import Foundation
import HTTPTypes
import Launchers
import Logging
import ModelStore
import Testing

@testable import Daemon

/// Idle unload and the loaded-runs limit, on real fake-engine processes under the daemon's supervisor.
@Suite("Loaded runs: idle unload and least-recently-used eviction")
struct LoadedRunsTests {
    /// A daemon context whose vLLM is the fake engine, and a model directory to run.
    static func daemon(maxLoaded: Int = 0) async throws -> (TestDaemon, LoadedRuns, String) {
        let daemon = try await TestDaemon(environment: ["MODELD_VLLM_COMMAND": productsDirectory.appending(path: "fake-engine").path])
        let model = daemon.root.appending(path: "model")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        let runs = LoadedRuns(
            supervisor: daemon.context.supervisor, activity: OutstandingRequests(), admission: Serializer(), maxLoaded: maxLoaded, logger: Logger(label: "test"))
        return (daemon, runs, model.path)
    }

    static func start(_ runs: LoadedRuns, model: String, name: String, keepAlive: Int?, onDemand: Bool) async throws -> RunInfo {
        let spec = LaunchSpec(engine: .vllm, modelPath: model, servedName: name)
        let run = try await runs.supervisor.start(RunRequest(name: name, model: name, spec: spec, keepAlive: keepAlive, onDemand: onDemand))
        let ready = try await runs.supervisor.waitUntilSettled(run.runID, timeout: .seconds(20))
        #expect(ready.state == .ready, "\(ready.reason ?? "")")
        return ready
    }

    @Test("a run idle past its keep-alive is unloaded, not while a request is in flight; on-demand runs are forgotten, explicit ones stopped and resumable")
    func idleUnload() async throws {
        let (daemon, runs, model) = try await Self.daemon()
        let supervisor = daemon.context.supervisor
        let onDemand = try await Self.start(runs, model: model, name: "od", keepAlive: 2, onDemand: true)
        let pinned = try await Self.start(runs, model: model, name: "pinned", keepAlive: nil, onDemand: false)
        let explicit = try await Self.start(runs, model: model, name: "explicit", keepAlive: 2, onDemand: false)
        let pid = try #require(onDemand.pid)

        // Nothing is idle yet.
        #expect(await runs.unloadIdle().isEmpty)
        // A request in flight keeps a run loaded however long it takes.
        runs.activity.begin(onDemand.runID)
        #expect(await runs.unloadIdle(now: .now + .seconds(60)) == [explicit.runID])
        runs.activity.end(onDemand.runID)
        #expect(await runs.unloadIdle(now: .now + .seconds(1)).isEmpty, "the request just ended")
        #expect(await runs.unloadIdle(now: .now + .seconds(3)) == [onDemand.runID])

        let listed = await supervisor.list()
        #expect(!listed.contains { $0.runID == onDemand.runID }, "an unloaded on-demand run is forgotten")
        #expect(listed.first { $0.runID == pinned.runID }?.state == .ready, "no keep-alive: stays loaded")
        let stopped = try #require(listed.first { $0.runID == explicit.runID })
        #expect(stopped.state == .stopped && stopped.desiredState == .stopped)
        var gone = false
        for _ in 0..<100 where !gone {
            gone = !isAlive(pid)
            if !gone { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(gone, "the unloaded engine \(pid) is still alive")

        // The explicit run comes back with its options when asked (what the gateway does for a request naming it).
        let resumed = try await supervisor.resume("explicit")
        #expect(resumed.runID == explicit.runID)
        let back = try await supervisor.waitUntilSettled(explicit.runID, timeout: .seconds(20))
        #expect(back.state == .ready && back.keepAlive == 2)
        await supervisor.shutdown()
    }

    @Test("at the limit, the least recently used idle on-demand run makes room; busy and explicit runs are never evicted")
    func leastRecentlyUsed() async throws {
        let (daemon, runs, model) = try await Self.daemon(maxLoaded: 3)
        let supervisor = daemon.context.supervisor
        let older = try await Self.start(runs, model: model, name: "older", keepAlive: 300, onDemand: true)
        let newer = try await Self.start(runs, model: model, name: "newer", keepAlive: 300, onDemand: true)
        let pinned = try await Self.start(runs, model: model, name: "pinned", keepAlive: nil, onDemand: false)
        // "older" was used first and "newer" after it, although "older" was used most recently before that.
        runs.activity.begin(older.runID)
        runs.activity.end(older.runID)
        try await Task.sleep(for: .milliseconds(20))
        runs.activity.begin(newer.runID)
        runs.activity.end(newer.runID)

        try await runs.makeRoom(for: "fourth", strict: true)
        var ids = Set(await supervisor.list().map(\.runID))
        #expect(!ids.contains(older.runID) && ids.contains(newer.runID) && ids.contains(pinned.runID))

        // Under the limit now: nothing more is unloaded.
        try await runs.makeRoom(for: "fourth", strict: true)
        #expect(Set(await supervisor.list().map(\.runID)) == ids)

        // Full again, and the only on-demand run is busy: an on-demand start is refused with 503,
        // an explicit one goes over the limit rather than evict a busy run.
        _ = try await Self.start(runs, model: model, name: "third", keepAlive: nil, onDemand: false)
        runs.activity.begin(newer.runID)
        await #expect(throws: OnDemandError.self) { try await runs.makeRoom(for: "fifth", strict: true) }
        try await runs.makeRoom(for: "fifth", strict: false)
        ids = Set(await supervisor.list().map(\.runID))
        #expect(ids.contains(newer.runID))
        runs.activity.end(newer.runID)
        try await runs.makeRoom(for: "fifth", strict: true)
        #expect(!(await supervisor.list().map(\.runID)).contains(newer.runID))
        await supervisor.shutdown()
    }

    @Test("concurrent on-demand starts of different models never load more runs than max_loaded_runs, also while one evicts an idle run; the others get 503")
    func concurrentOnDemandStarts() async throws {
        let limit = 1
        let (daemon, runs, model) = try await Self.daemon(maxLoaded: limit)
        let supervisor = daemon.context.supervisor
        // The limit is reached by an idle on-demand run: the first start to be admitted unloads it, which takes a while.
        let idle = try await Self.start(runs, model: model, name: "idle", keepAlive: 300, onDemand: true)
        let outcomes = await withTaskGroup(of: (loadedAfter: Int, error: (any Error)?).self) { group in
            for index in 0..<6 {
                group.addTask {
                    let name = "demand-\(index)"
                    let request = RunRequest(
                        name: name, model: name, spec: LaunchSpec(engine: .vllm, modelPath: model, servedName: name), keepAlive: 300,
                        onDemand: true)
                    do {
                        // What the gateway does for a request naming a model that is not loaded.
                        _ = try await runs.load(name, strict: true) { try await supervisor.start(request) }
                    } catch {
                        return (0, error)
                    }
                    // Right after this start: the runs loaded, as the supervisor lists them.
                    return (await supervisor.list().filter { $0.state == .starting || $0.state == .ready }.count, nil)
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let started = outcomes.filter { $0.error == nil }
        #expect(!started.isEmpty)
        for outcome in started { #expect(outcome.loadedAfter <= limit, "\(outcome.loadedAfter) runs loaded, max_loaded_runs \(limit)") }
        for case let error? in outcomes.map(\.error) {
            #expect((error as? OnDemandError)?.status == .serviceUnavailable, "\(error)")
        }
        let loaded = await supervisor.list().filter { $0.state == .starting || $0.state == .ready }
        #expect(loaded.count <= limit, "\(loaded.map(\.name))")
        #expect(!loaded.contains { $0.runID == idle.runID })
        await supervisor.shutdown()
    }
}
