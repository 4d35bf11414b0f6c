import Foundation
import ModelStore

/// How one engine is launched and probed (docs/design/engine-launch.md).
package protocol EngineContract: Sendable {
    var kind: EngineKind { get }
    /// The engine's own arguments and environment variables for a run; the executable prefix comes first.
    /// - Parameters:
    ///   - spec: the run's model and options.
    ///   - port: the loopback port the engine listens on.
    ///   - dataDirectory: modeld's data directory (hub cache, Ollama models).
    /// - Returns: the arguments after the executable and the variables the engine needs.
    func arguments(for spec: LaunchSpec, port: Int, dataDirectory: DataDirectory) throws -> (arguments: [String], environment: [String: String])
    /// The path whose 200 means "ready to serve".
    var readinessPath: String { get }
    /// The path probed while the engine runs.
    var livenessPath: String { get }
    /// A sentence telling the user how to install the engine when its executable is missing.
    var installHint: String { get }
    /// Text the engine prints when it refuses its command line: a start that ends with such a line in its log fails
    /// at once, since every restart would be refused the same way.
    var commandLineRefusals: [String] { get }
}

extension EngineContract {
    /// Python's `argparse` (vLLM, SGLang): `vllm: error: unrecognized arguments: --x`, `error: argument --port: ...`.
    package var commandLineRefusals: [String] { [": error: unrecognized arguments:", ": error: argument "] }
}

/// The contract for an engine kind.
package func engineContract(for kind: EngineKind) -> any EngineContract {
    switch kind {
    case .vllm: VLLMContract()
    case .sglang: SGLangContract()
    case .ollama: OllamaContract()
    case .builtin: BuiltinContract()
    case .llamacpp: LlamaCppContract()
    }
}

/// The variables vLLM and SGLang need to read modeld's hub cache without going online.
func huggingFaceEnvironment(_ dataDirectory: DataDirectory, options: RunOptions) -> [String: String] {
    var environment = [
        "HF_HUB_CACHE": dataDirectory.huggingFaceHub.path(percentEncoded: false).trimmingSlash,
        "HF_HUB_OFFLINE": "1",
    ]
    if let gpus = options.gpus { environment["CUDA_VISIBLE_DEVICES"] = gpus }
    return environment
}

/// The model directory a contract needs, or an error naming the run's engine.
func requireModelPath(_ spec: LaunchSpec) throws -> String {
    guard let path = spec.modelPath, !path.isEmpty else {
        throw LaunchError(
            code: .invalidSpec,
            message: "\(spec.engine.rawValue) needs the model's snapshot directory, and the run has none: pull the model first")
    }
    return path
}

extension String {
    /// Without a trailing `/` (a directory URL's path has one).
    var trimmingSlash: String {
        count > 1 && hasSuffix("/") ? String(dropLast()) : self
    }
}
