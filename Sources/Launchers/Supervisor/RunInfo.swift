import Foundation
import ModelStore

/// What the daemon reports about a run.
package struct RunInfo: Sendable, Hashable, Codable {
    package var runID: String
    package var name: String
    package var model: String
    package var engine: EngineKind
    package var state: RunState
    package var desiredState: DesiredRunState
    package var pid: Int32?
    package var port: Int?
    /// `http://127.0.0.1:<port>`, the engine's OpenAI-compatible base, while it has a port.
    package var endpoint: String?
    /// The model name to send in requests to the endpoint.
    package var servedName: String
    /// The snapshot directory the engine loads (nil for Ollama runs, whose models live in Ollama's store).
    package var modelPath: String?
    /// The GPUs it holds (`CUDA_VISIBLE_DEVICES`): as asked, or as placed (docs/design/gpus.md, Placement).
    package var gpus: String?
    package var restarts: Int
    package var exitStatus: Int?
    package var reason: String?
    /// Seconds without requests after which the run is unloaded; nil keeps it until stopped.
    package var keepAlive: Int?
    /// Started by the gateway for a request.
    package var onDemand: Bool
    package var createdAt: Date
    package var updatedAt: Date

    package init(record: RunRecord, servedName: String, modelPath: String? = nil, gpus: String? = nil) {
        self.gpus = gpus
        runID = record.id
        name = record.name
        model = record.model
        engine = EngineKind(rawValue: record.engine) ?? .builtin
        state = record.state
        desiredState = record.desiredState
        pid = record.pid
        port = record.port
        endpoint = record.port.map { "http://127.0.0.1:\($0)" }
        self.servedName = servedName
        self.modelPath = modelPath
        restarts = record.restarts
        exitStatus = record.exitStatus
        reason = record.reason
        keepAlive = record.keepAlive
        onDemand = record.onDemand
        createdAt = record.createdAt
        updatedAt = record.updatedAt
    }

    enum CodingKeys: String, CodingKey {
        case name, model, engine, state, pid, port, endpoint, restarts, reason, gpus
        case runID = "run_id"
        case desiredState = "desired_state"
        case servedName = "served_name"
        case modelPath = "model_path"
        case exitStatus = "exit_status"
        case keepAlive = "keep_alive"
        case onDemand = "on_demand"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }
}
