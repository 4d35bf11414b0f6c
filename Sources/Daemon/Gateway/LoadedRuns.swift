import Catalog
import Foundation
import HTTPTypes
import Launchers
import Logging
import ModelStore
import ServiceLifecycle
import Synchronization

/// What the daemon does about loaded runs (`starting` or `ready`):
///
/// - **Idle unload**: a ready run with a keep-alive and no request in flight for that long is unloaded. Runs
///   started by the gateway for a request (on demand) get `on_demand_keep_alive` (default 5 minutes); runs
///   started with `modelctl start` stay until stopped unless started with `--keep-alive`.
/// - **A limit on loaded runs** (`max_loaded_runs`, default 3, 0 for none): before a run is loaded, the least
///   recently used idle on-demand runs are unloaded to make room. Explicit starts always proceed (they only
///   evict on-demand runs); an on-demand start with no room and nothing to evict gets a 503. Starts are admitted
///   one at a time (``load(_:strict:start:)``), so two of them never both take the last place.
///
/// Unloading an on-demand run forgets it (its log stays); an explicit run is stopped, and the gateway
/// starts it again when a request names it.
struct LoadedRuns: Sendable {
    let supervisor: Supervisor
    let activity: OutstandingRequests
    /// Admits one start at a time; shared by every route that starts runs.
    let admission: Serializer
    /// The most runs loaded at once; 0 means no limit.
    let maxLoaded: Int
    let logger: Logger

    /// Makes room for a run and starts it with `start` (which returns once the supervisor lists the run, or
    /// throws), while no other start is admitted: the place the room check found is held until then.
    /// - Parameter strict: as for ``makeRoom(for:strict:)``.
    func load(_ model: String, strict: Bool, start: () async throws -> RunInfo) async throws -> RunInfo {
        guard maxLoaded > 0 else { return try await start() }
        return try await admission.run {
            try await makeRoom(for: model, strict: strict)
            return try await start()
        }
    }

    /// Unloads least recently used idle on-demand runs until one more run fits under the limit.
    /// - Parameter strict: throw ``OnDemandError`` (503) when no room can be made, rather than go over.
    func makeRoom(for model: String, strict: Bool) async throws {
        guard maxLoaded > 0 else { return }
        let loaded = await supervisor.list().filter { $0.state == .starting || $0.state == .ready }
        let excess = loaded.count + 1 - maxLoaded
        guard excess > 0 else { return }
        let evictable = loaded
            .filter { $0.onDemand && $0.state == .ready && activity.inFlight($0.runID) == 0 }
            .sorted { activity.lastUsed($0.runID) < activity.lastUsed($1.runID) }
        if strict && evictable.count < excess {
            throw OnDemandError(
                status: .serviceUnavailable,
                message: "cannot load \(model): \(loaded.count) runs are loaded (max_loaded_runs \(maxLoaded)) and none is an idle on-demand run to unload; stop one with `modelctl stop`, or raise --max-loaded-runs")
        }
        for run in evictable.prefix(excess) {
            await unload(run, why: "least recently used, unloaded to make room for \(model) (max_loaded_runs \(maxLoaded))")
        }
    }

    /// Unloads every ready run idle for longer than its keep-alive.
    /// - Returns: the ids of the runs unloaded.
    @discardableResult
    func unloadIdle(now: ContinuousClock.Instant = .now) async -> [String] {
        let runs = await supervisor.list()
        activity.retain(only: Set(runs.filter { $0.state == .starting || $0.state == .ready }.map(\.runID)))
        var unloaded: [String] = []
        for run in runs where run.state == .ready {
            guard let keepAlive = run.keepAlive, activity.inFlight(run.runID) == 0 else { continue }
            let idle = now - activity.lastUsed(run.runID)
            if idle >= .seconds(keepAlive) {
                await unload(run, why: "idle for \(keepAlive) s (keep_alive)")
                unloaded.append(run.runID)
            }
        }
        return unloaded
    }

    private func unload(_ run: RunInfo, why: String) async {
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
}

/// Checks for idle runs every `interval` until the daemon shuts down.
struct IdleUnloader: Service {
    let runs: LoadedRuns
    let interval: Duration

    func run() async throws {
        // Returns (without an error) when the daemon shuts down.
        await cancelWhenGracefulShutdown {
            while (try? await Task.sleep(for: interval)) != nil {
                await runs.unloadIdle()
            }
        }
    }
}

/// Runs one body at a time, in the order they arrive.
final class Serializer: Sendable {
    private struct State {
        var busy = false
        var waiting: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    func run<T>(_ body: () async throws -> T) async throws -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let enter = state.withLock { state in
                if state.busy {
                    state.waiting.append(continuation)
                    return false
                }
                state.busy = true
                return true
            }
            if enter { continuation.resume() }
        }
        defer {
            // Hands the turn straight to the next in line, or frees it.
            let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
                if state.waiting.isEmpty { state.busy = false }
                return state.waiting.isEmpty ? nil : state.waiting.removeFirst()
            }
            next?.resume()
        }
        return try await body()
    }
}
