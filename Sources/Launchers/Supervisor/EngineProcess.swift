import Foundation
import Synchronization

/// One spawned engine: its pid (also its session and process-group id), a reaper thread that waits for
/// exactly this pid, and group signalling.
package final class EngineProcess: Sendable {
    package let pid: Int32
    /// `/proc/<pid>/stat` field 22, read right after the fork (the pid cannot be reused before we reap it).
    package let startTime: Int64?

    private struct State {
        var status: ExitStatus?
        var waiters: [Int: CheckedContinuation<ExitStatus?, Never>] = [:]
        var nextWaiter = 0
    }

    private let state = Mutex(State())

    /// Takes charge of a child we forked: starts its reaper thread.
    package init(childPid pid: Int32) {
        self.pid = pid
        self.startTime = ProcStat(pid: pid)?.startTime
        let thread = Thread { [self] in reap() }
        thread.name = "modeld-reaper-\(pid)"
        thread.stackSize = 256 << 10
        thread.start()
    }

    /// The exit status once the process has been reaped.
    package var exitStatus: ExitStatus? { state.withLock { $0.status } }

    /// `waitpid` for this pid only: never `waitpid(-1)`, which would steal other libraries' children.
    private func reap() {
        var status: Int32 = 0
        var result: Int32
        repeat {
            result = waitpid(pid, &status, 0)
        } while result < 0 && errno == EINTR
        let exit = result == pid ? ExitStatus(waitStatus: status) : .exited(-1)
        let waiters = state.withLock { state in
            state.status = exit
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: exit) }
    }

    /// Waits for the process to end.
    /// - Returns: its status, or nil when the calling task is cancelled first.
    package func waitForExit() async -> ExitStatus? {
        let id = state.withLock { state -> Int in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ExitStatus?, Never>) in
                let ready: ExitStatus?? = state.withLock { state in
                    if let status = state.status { return .some(status) }
                    if Task.isCancelled { return .some(nil) }
                    state.waiters[id] = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume(returning: nil)
        }
    }

    /// Waits at most `timeout` for the process to end.
    /// - Returns: its status, or nil on time-out or cancellation.
    package func waitForExit(timeout: Duration) async -> ExitStatus? {
        if let status = exitStatus { return status }
        return await withTaskGroup(of: ExitStatus?.self) { group in
            group.addTask { await self.waitForExit() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? exitStatus
        }
    }

    /// Sends `signal` to the whole process group.
    /// - Returns: false when the group no longer exists.
    @discardableResult
    package func signalGroup(_ signal: Int32) -> Bool {
        ProcessGroup(id: pid).signal(signal)
    }

    /// Stops the engine: SIGTERM to the group, `grace`, SIGKILL to the group, reap, and a check that the
    /// group is gone (docs/design/supervision.md, Stopping).
    /// - Returns: the leader's exit status and whether the whole group is gone.
    @discardableResult
    package func terminate(grace: Duration) async -> (status: ExitStatus?, groupGone: Bool) {
        let group = ProcessGroup(id: pid)
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        group.signal(SIGTERM)
        var status = await waitForExit(timeout: grace)
        // The leader may be gone while helpers that ignore SIGTERM linger: they get the rest of the grace.
        if status != nil {
            _ = await group.waitUntilGone(timeout: max(.zero, deadline - clock.now), leader: pid)
        }
        if status == nil || group.exists {
            group.signal(SIGKILL)
            if status == nil { status = await waitForExit() }
        }
        let gone = await group.waitUntilGone(timeout: .seconds(5), leader: pid)
        return (status, gone)
    }

    /// Kills what is left of the group after the leader ended by itself, and reaps it.
    @discardableResult
    package func killRemainingGroup() async -> Bool {
        let group = ProcessGroup(id: pid)
        if group.exists { group.signal(SIGKILL) }
        _ = await waitForExit()
        return await group.waitUntilGone(timeout: .seconds(5), leader: pid)
    }
}
