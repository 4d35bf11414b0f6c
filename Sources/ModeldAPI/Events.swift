/// The event types of `GET /api/v1/events`, a Server-Sent Events stream. Each event's `data` is one JSON object:
///
/// | `event` | `data` |
/// |---|---|
/// | `run.changed` | the run (``RunSummary``) after a change of state, reason, process or port |
/// | `run.removed` | ``RunRemoved``: a run forgotten (an on-demand run unloaded, or removed) |
/// | `pull.progress` | the pull (``PullEvent``): started, or progress, at most 4 a second per pull |
/// | `pull.done`, `pull.failed` | the pull's last ``PullEvent`` (`failed` also when cancelled) |
/// | `version.added`, `version.removed` | the version (``LocalVersionInfo``): pulled, imported or adopted; removed |
/// | `key.created`, `key.revoked` | the key (``KeyInfo``, never its value) |
/// | `reload` | ``EventsReload``: events were missed; read the state again from the API |
package enum DaemonEventType: String, Sendable, CaseIterable {
    case runChanged = "run.changed"
    case runRemoved = "run.removed"
    case pullProgress = "pull.progress"
    case pullDone = "pull.done"
    case pullFailed = "pull.failed"
    case versionAdded = "version.added"
    case versionRemoved = "version.removed"
    case keyCreated = "key.created"
    case keyRevoked = "key.revoked"
    case reload
}

/// `run.removed`'s data.
package struct RunRemoved: Codable, Sendable, Hashable {
    package var runID: String
    package var name: String

    package init(runID: String, name: String) {
        self.runID = runID
        self.name = name
    }

    enum CodingKeys: String, CodingKey {
        case name
        case runID = "run_id"
    }
}

/// `reload`'s data: why the client must read the state again.
package struct EventsReload: Codable, Sendable, Hashable {
    package var reason: String

    package init(reason: String) { self.reason = reason }
}
