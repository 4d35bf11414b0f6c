import Foundation
import ModelStore

/// The shared `ollama serve` child (docs/design/engine-launch.md, Ollama): one per daemon, models enter it over its API.
package struct OllamaContract: EngineContract {
    /// `OLLAMA_KEEP_ALIVE`: `-1` keeps started models loaded until their run stops.
    package var keepAlive: String
    package var numParallel: Int?
    package var maxLoadedModels: Int?

    package init(keepAlive: String = "-1", numParallel: Int? = nil, maxLoadedModels: Int? = nil) {
        self.keepAlive = keepAlive
        self.numParallel = numParallel
        self.maxLoadedModels = maxLoadedModels
    }

    package var kind: EngineKind { .ollama }
    package var readinessPath: String { "/" }
    package var livenessPath: String { "/" }
    package var installHint: String {
        "install it from https://ollama.com/download (`curl -fsSL https://ollama.com/install.sh | sh`) or set the Ollama executable in the configuration"
    }

    package func arguments(for spec: LaunchSpec, port: Int, dataDirectory: DataDirectory) throws -> (
        arguments: [String], environment: [String: String]
    ) {
        var environment = [
            "OLLAMA_HOST": "127.0.0.1:\(port)",
            "OLLAMA_MODELS": dataDirectory.ollama.path(percentEncoded: false).trimmingSlash,
            "OLLAMA_KEEP_ALIVE": keepAlive,
        ]
        if let numParallel { environment["OLLAMA_NUM_PARALLEL"] = String(numParallel) }
        if let maxLoadedModels { environment["OLLAMA_MAX_LOADED_MODELS"] = String(maxLoadedModels) }
        if let gpus = spec.options.gpus { environment["CUDA_VISIBLE_DEVICES"] = gpus }
        return (["serve"] + spec.options.extraArguments, environment)
    }
}
