import Foundation

/// A process group (an engine's session: pgid = the engine's pid).
package struct ProcessGroup: Sendable, Hashable {
    package var id: Int32

    package init(id: Int32) {
        self.id = id
    }

    /// `kill(-pgid, signal)`; false when the group does not exist (ESRCH).
    @discardableResult
    package func signal(_ signal: Int32) -> Bool {
        kill(-id, signal) == 0 || errno != ESRCH
    }

    /// Whether any process, zombies included, is in the group: `kill(-pgid, 0)` is not ESRCH.
    package var exists: Bool {
        kill(-id, 0) == 0 || errno != ESRCH
    }

    /// Whether a process of the group still runs (zombies do not count).
    package var hasRunningMembers: Bool {
        ProcStat.members(ofGroup: id).contains { $0.isRunning }
    }

    /// Reaps the group's zombies that were reparented to us (we are the child subreaper), each by its own
    /// pid. The leader is never reaped here: it is our engine, whose reaper thread owns it, or a previous
    /// daemon's engine, not ours at all.
    func reapOrphans(leader: Int32?) {
        let me = getpid()
        for member in ProcStat.members(ofGroup: id) where member.parent == me && !member.isRunning && member.pid != id && member.pid != leader {
            var status: Int32 = 0
            _ = waitpid(member.pid, &status, WNOHANG)
        }
    }

    /// Waits until `kill(-pgid, 0)` fails with ESRCH, reaping orphaned zombies on the way. Zombies whose
    /// parent is another process (not ours to reap) count as gone once nothing in the group runs.
    /// - Returns: whether the group is gone.
    func waitUntilGone(timeout: Duration, leader: Int32?) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var zombieOnlySince: ContinuousClock.Instant?
        while true {
            reapOrphans(leader: leader)
            if !exists { return true }
            if !hasRunningMembers {
                let since = zombieOnlySince ?? clock.now
                zombieOnlySince = since
                if clock.now - since > .milliseconds(500) { return true }
            } else {
                zombieOnlySince = nil
            }
            if clock.now >= deadline { return false }
            await pause(.milliseconds(20))
        }
    }
}

/// Sleeps even when the task is cancelled: clean-up loops must not spin or cut a grace period short.
func pause(_ duration: Duration) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let nanoseconds = duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(nanoseconds))) {
            continuation.resume()
        }
    }
}
