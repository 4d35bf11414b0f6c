/// Everything needed to launch (and, after a daemon restart, relaunch) one run's engine.
///
/// Stored as the run's `options` JSON, so a run can be started again from the store alone.
package struct LaunchSpec: Sendable, Hashable, Codable {
    package var engine: EngineKind
    /// The snapshot directory the engine loads (`<hub>/models--o--n/snapshots/<commit>`); unused by Ollama.
    package var modelPath: String?
    /// The name clients use in the OpenAI API (`--served-model-name`).
    package var servedName: String
    /// How the model enters the shared Ollama server; only for ``EngineKind/ollama``.
    package var ollama: OllamaModelSource?
    package var options: RunOptions

    package init(
        engine: EngineKind, modelPath: String? = nil, servedName: String, ollama: OllamaModelSource? = nil,
        options: RunOptions = RunOptions()
    ) {
        self.engine = engine
        self.modelPath = modelPath
        self.servedName = servedName
        self.ollama = ollama
        self.options = options
    }

    enum CodingKeys: String, CodingKey {
        case engine, ollama, options
        case modelPath = "model_path"
        case servedName = "served_name"
    }
}

extension LaunchSpec {
    /// Whether the engine answers HTTP: every run but the worker of a multi-node run (docs/multi-node.md), which is
    /// given no port and is supervised by its process alone.
    package var servesHTTP: Bool { !(options.multiNode?.isWorker ?? false) }
}
