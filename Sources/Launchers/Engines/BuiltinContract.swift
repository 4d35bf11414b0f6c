import ModelStore

/// modeld's own engine: `modeld engine --model DIR --host 127.0.0.1 --port P --served-model-name N`.
package struct BuiltinContract: EngineContract {
    package init() {}

    package var kind: EngineKind { .builtin }
    package var readinessPath: String { "/health" }
    package var livenessPath: String { "/health" }
    package var installHint: String {
        "the built-in engine is part of the modeld binary: set the built-in engine executable to a modeld binary"
    }

    package func arguments(for spec: LaunchSpec, port: Int, dataDirectory: DataDirectory) throws -> (
        arguments: [String], environment: [String: String]
    ) {
        var arguments = [
            "engine", "--model", try requireModelPath(spec), "--host", "127.0.0.1", "--port", String(port),
            "--served-model-name", spec.servedName,
        ]
        arguments += spec.options.extraArguments
        var environment: [String: String] = [:]
        if let gpus = spec.options.gpus { environment["CUDA_VISIBLE_DEVICES"] = gpus }
        return (arguments, environment)
    }
}
