import Foundation
import ModelStore

/// Turns a run's spec into the exact command line and environment of its engine.
package struct CommandBuilder: Sendable {
    package var dataDirectory: DataDirectory
    package var engines: [EngineKind: EngineSettings]
    /// The environment engines start from (the daemon's own, normally), before stripping.
    package var baseEnvironment: [String: String]
    package var ollama: OllamaContract

    package init(
        dataDirectory: DataDirectory, engines: [EngineKind: EngineSettings], baseEnvironment: [String: String],
        ollama: OllamaContract = OllamaContract()
    ) {
        self.dataDirectory = dataDirectory
        self.engines = engines
        self.baseEnvironment = baseEnvironment
        self.ollama = ollama
    }

    /// The contract for an engine kind (Ollama's carries the configured server settings).
    package func contract(for kind: EngineKind) -> any EngineContract {
        kind == .ollama ? ollama : engineContract(for: kind)
    }

    /// The command for a run on `port`.
    /// - Throws: ``LaunchError`` with ``LaunchError/Code/engineNotFound`` when the executable is missing,
    ///   saying how to install it.
    package func command(for spec: LaunchSpec, port: Int) throws -> LaunchCommand {
        let contract = contract(for: spec.engine)
        let settings = engines[spec.engine] ?? EngineSettings.defaults(for: spec.engine)
        guard let program = settings.command.first, !program.isEmpty else {
            throw LaunchError(code: .invalidSpec, message: "the \(spec.engine.rawValue) executable is configured as an empty command")
        }
        if spec.options.multiNode != nil, spec.engine != .vllm {
            throw LaunchError(
                code: .invalidSpec, message: "a run across several hosts is vLLM's; \(spec.engine.displayName) runs on one host (docs/multi-node.md)")
        }
        let path = try resolveExecutable(program, engine: spec.engine, hint: contract.installHint)
        let (arguments, variables) = try contract.arguments(for: spec, port: port, dataDirectory: dataDirectory)
        var environment = Self.strippedEnvironment(baseEnvironment)
        environment.merge(variables) { _, new in new }
        environment.merge(spec.options.environment) { _, new in new }
        environment = Self.strippedEnvironment(environment)
        return LaunchCommand(executablePath: path, arguments: settings.command + arguments, environment: environment)
    }

    /// The environment without the variables meant for the daemon alone: systemd's notification socket,
    /// socket-activation and watchdog variables (docs/design/engine-launch.md, Environment of an engine).
    package static func strippedEnvironment(_ environment: [String: String]) -> [String: String] {
        environment.filter { key, _ in
            key != "NOTIFY_SOCKET" && !key.hasPrefix("LISTEN_") && !key.hasPrefix("WATCHDOG_")
        }
    }

    /// An absolute path to execute: `program` itself when it holds a `/`, else the first match on PATH.
    func resolveExecutable(_ program: String, engine: EngineKind, hint: String) throws -> String {
        if program.contains("/") {
            guard FileManager.default.isExecutableFile(atPath: program) else {
                throw LaunchError(
                    code: .engineNotFound, message: "\(engine.displayName) executable \(program) does not exist or is not executable: \(hint)")
            }
            return program
        }
        let searchPath = baseEnvironment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in searchPath.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/\(program)"
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory), !isDirectory.boolValue,
                FileManager.default.isExecutableFile(atPath: candidate)
            {
                return candidate
            }
        }
        throw LaunchError(code: .engineNotFound, message: "\(program) not found on PATH: \(hint)")
    }
}

extension EngineKind {
    /// The engine's name as people write it.
    package var displayName: String {
        switch self {
        case .vllm: "vLLM"
        case .sglang: "SGLang"
        case .ollama: "Ollama"
        case .builtin: "built-in engine"
        case .llamacpp: "llama.cpp"
        }
    }
}

/// This process's executable, for the built-in engine: `/proc/self/exe` resolved, so the recorded command
/// line names the real binary.
package func currentExecutablePath() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "/proc/self/exe"
}
