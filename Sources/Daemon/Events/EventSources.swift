import Downloads
import Launchers
import ModelStore
import ModeldAPI
import ServiceLifecycle
import Synchronization

extension EventBus {
    /// Publishes `run.changed` when a run's state, reason, process or port changes, and `run.removed`, following
    /// the supervisor's changes until it goes away.
    func watchRuns(of supervisor: Supervisor) {
        let changes = supervisor.changes()
        Task { [self] in
            var known: [String: RunInfo]?
            for await runs in changes {
                let current = Dictionary(runs.map { ($0.runID, $0) }, uniquingKeysWith: { $1 })
                // The first element is the runs as they were when watching began: nothing changed yet.
                if let known {
                    let changed = runs.filter { run in known[run.runID].map { !Self.sameVisibleState($0, run) } ?? true }
                    let removed = known.values.filter { current[$0.runID] == nil }.sorted { $0.createdAt < $1.createdAt }
                    for run in changed { publish(.runChanged, RunSummary(run)) }
                    for run in removed { publish(.runRemoved, RunRemoved(runID: run.runID, name: run.name)) }
                }
                known = current
            }
        }
    }

    /// Whether a live view would show the two the same (`updated_at` moves with every save).
    private static func sameVisibleState(_ a: RunInfo, _ b: RunInfo) -> Bool {
        a.state == b.state && a.desiredState == b.desiredState && a.reason == b.reason && a.pid == b.pid && a.port == b.port
            && a.restarts == b.restarts && a.exitStatus == b.exitStatus && a.keepAlive == b.keepAlive
    }
}

/// Publishes each pull's events (progress at most ``interval`` apart per pull) and the version a pull adds.
final class PullEventSource: Sendable {
    let bus: EventBus
    let pulls: PullService
    /// At most 4 progress events a second per pull.
    static let interval: Duration = .milliseconds(250)
    private let watched = Mutex(Set<String>())

    init(bus: EventBus, pulls: PullService) {
        self.bus = bus
        self.pulls = pulls
    }

    /// Follows a job (once, however many callers join it) until its last event.
    func watch(_ job: PullJob) {
        guard watched.withLock({ $0.insert(job.id).inserted }) else { return }
        let events = job.events()
        Task { [self] in
            var lastProgress: ContinuousClock.Instant?
            for await event in events {
                switch event.event {
                case .done:
                    bus.publish(.pullDone, event)
                    if event.alreadyPresent != true, let commit = event.commit,
                        let version = try? await pulls.findVersion(source: job.request.source, repo: job.request.repo, commit: commit)
                    {
                        bus.publish(.versionAdded, LocalVersionInfo(version))
                    }
                case .error:
                    bus.publish(.pullFailed, event)
                default:
                    let now = ContinuousClock.now
                    if let last = lastProgress, now - last < Self.interval, event.event == .progress { continue }
                    lastProgress = now
                    bus.publish(.pullProgress, event)
                }
            }
            _ = watched.withLock { $0.remove(job.id) }
        }
    }
}

/// Sends the event stream's heartbeats, and ends every stream when the daemon shuts down (so that the
/// listeners' drain does not wait for clients that never hang up).
struct EventHeartbeat: Service {
    let bus: EventBus
    /// Under common proxies' idle timeouts (60 s) and the daemon's own.
    static let interval: Duration = .seconds(15)

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while (try? await Task.sleep(for: Self.interval)) != nil {
                bus.heartbeat()
            }
        }
        bus.finishAll()
    }
}
