import ModelStore

/// modeld's own engine: `modeld engine --model DIR|FILE.gguf --host 127.0.0.1 --port P --served-model-name N
/// [--quantize q8_0|q4_0]`; with a model file, the GGUF file of the snapshot (as llama.cpp's contract chooses it).
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
        let path = try requireModelPath(spec)
        let model = try spec.options.modelFile.map { try LlamaCppContract.modelFile(in: path, named: $0) } ?? path
        var arguments = [
            "engine", "--model", model, "--host", "127.0.0.1", "--port", String(port), "--served-model-name", spec.servedName,
        ]
        if let quantization = spec.options.quantization { arguments += ["--quantize", quantization] }
        arguments += spec.options.extraArguments
        var environment: [String: String] = [:]
        if let gpus = spec.options.gpus { environment["CUDA_VISIBLE_DEVICES"] = gpus }
        return (arguments, environment)
    }
}
