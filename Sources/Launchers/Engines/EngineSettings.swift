/// Per-engine settings from the configuration: what to execute and how long to wait for it.
package struct EngineSettings: Sendable, Hashable {
    /// The command prefix: the executable (a name looked up on PATH, or a path) and any fixed arguments
    /// (`["python3", "-m", "sglang.launch_server"]`).
    package var command: [String]
    /// How long a start may take before the engine counts as failed to start.
    package var startTimeout: Duration
    /// Time between SIGTERM and SIGKILL when stopping.
    package var stopGrace: Duration

    package init(command: [String], startTimeout: Duration, stopGrace: Duration) {
        self.command = command
        self.startTimeout = startTimeout
        self.stopGrace = stopGrace
    }

    /// The defaults of each engine (docs/design/engine-launch.md, Defaults per engine).
    package static func defaults(for kind: EngineKind) -> EngineSettings {
        switch kind {
        case .vllm: EngineSettings(command: ["vllm"], startTimeout: .seconds(600), stopGrace: .seconds(90))
        case .sglang:
            EngineSettings(command: ["python3", "-m", "sglang.launch_server"], startTimeout: .seconds(600), stopGrace: .seconds(90))
        case .ollama: EngineSettings(command: ["ollama"], startTimeout: .seconds(60), stopGrace: .seconds(10))
        case .builtin: EngineSettings(command: [currentExecutablePath()], startTimeout: .seconds(300), stopGrace: .seconds(10))
        case .llamacpp: EngineSettings(command: ["llama-server"], startTimeout: .seconds(300), stopGrace: .seconds(10))
        }
    }
}
