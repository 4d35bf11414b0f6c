import Foundation
import GRDB

/// Where a run is in its lifecycle.
package enum RunState: String, Sendable, Codable, CaseIterable, DatabaseValueConvertible {
    case starting, ready, stopping, stopped, failed

    /// Whether an engine process may exist for a run in this state.
    package var isLive: Bool { self == .starting || self == .ready || self == .stopping }
    /// Loaded, or being loaded: what counts against the loaded-runs limit.
    package var isLoaded: Bool { self == .starting || self == .ready }
}

/// What the user wants a run to be; the supervisor works towards it, also after a daemon restart.
package enum DesiredRunState: String, Sendable, Codable, CaseIterable, DatabaseValueConvertible {
    case running, stopped
}

/// One row of the `runs` table: a started model, its engine process and its history.
package struct RunRecord: Sendable, Hashable, Codable, FetchableRecord, PersistableRecord {
    package static let databaseTableName = "runs"
    package var id: String
    package var name: String
    package var versionID: Int64?
    package var model: String
    package var engine: String
    /// The launch specification as JSON, enough to start the run again after a restart.
    package var options: String
    package var pid: Int32?
    /// `/proc/<pid>/stat` field 22, to tell our engine from a process that reused its pid.
    package var processStartTime: Int64?
    package var port: Int?
    package var state: RunState
    package var desiredState: DesiredRunState
    package var restarts: Int
    package var exitStatus: Int?
    package var reason: String?
    /// Seconds without requests after which the run is unloaded; nil keeps it until stopped.
    package var keepAlive: Int?
    /// Started by the gateway for a request rather than by `start`: unloaded when idle, evicted first.
    package var onDemand: Bool
    package var createdAt: Date
    package var updatedAt: Date

    package init(
        id: String, name: String, versionID: Int64? = nil, model: String, engine: String, options: String = "{}",
        pid: Int32? = nil, processStartTime: Int64? = nil, port: Int? = nil, state: RunState,
        desiredState: DesiredRunState, restarts: Int = 0, exitStatus: Int? = nil, reason: String? = nil,
        keepAlive: Int? = nil, onDemand: Bool = false, createdAt: Date = Date(), updatedAt: Date = Date()
    ) {
        self.id = id
        self.name = name
        self.versionID = versionID
        self.model = model
        self.engine = engine
        self.options = options
        self.pid = pid
        self.processStartTime = processStartTime
        self.port = port
        self.state = state
        self.desiredState = desiredState
        self.restarts = restarts
        self.exitStatus = exitStatus
        self.reason = reason
        self.keepAlive = keepAlive
        self.onDemand = onDemand
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    enum CodingKeys: String, CodingKey {
        case id, name, model, engine, options, pid, port, state, restarts, reason
        case versionID = "version_id"
        case processStartTime = "process_start_time"
        case desiredState = "desired_state"
        case exitStatus = "exit_status"
        case keepAlive = "keep_alive"
        case onDemand = "on_demand"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }
}

extension Store {
    /// Every run, oldest first.
    package func runs() async throws -> [RunRecord] {
        try await read { db in try RunRecord.order(Column("created_at"), Column("id")).fetchAll(db) }
    }

    /// The run with this id, if any.
    package func run(id: String) async throws -> RunRecord? {
        try await read { db in try RunRecord.fetchOne(db, key: id) }
    }

    /// Inserts or replaces a run row.
    package func saveRun(_ run: RunRecord) async throws {
        try await write { db in try run.save(db) }
    }

    /// Inserts or replaces a run row without waiting, in order with every other write (``write(_:completion:)``).
    package func saveRun(_ run: RunRecord, completion: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        write({ db in try run.save(db) }, completion: completion)
    }

    /// Deletes a run row.
    package func deleteRun(id: String) async throws {
        _ = try await write { db in try RunRecord.deleteOne(db, key: id) }
    }

    /// Deletes a run row without waiting, in order with every other write (``write(_:completion:)``).
    package func deleteRun(id: String, completion: @escaping @Sendable (Result<Bool, any Error>) -> Void) {
        write({ db in try RunRecord.deleteOne(db, key: id) }, completion: completion)
    }
}
