import ModelStore

/// `vllm serve <dir> --host 127.0.0.1 --port P --served-model-name N [...]` (docs/design/engine-launch.md, vLLM).
package struct VLLMContract: EngineContract {
    package init() {}

    package var kind: EngineKind { .vllm }
    package var readinessPath: String { "/health" }
    package var livenessPath: String { "/health" }
    package var installHint: String {
        "install it with `pip install vllm` or set the vLLM executable in the configuration"
    }

    package func arguments(for spec: LaunchSpec, port: Int, dataDirectory: DataDirectory) throws -> (
        arguments: [String], environment: [String: String]
    ) {
        let options = spec.options
        var arguments = [
            "serve", try requireModelPath(spec), "--host", "127.0.0.1", "--port", String(port),
            "--served-model-name", spec.servedName,
        ]
        if let size = options.tensorParallelSize { arguments += ["--tensor-parallel-size", String(size)] }
        if let fraction = options.memoryFraction { arguments += ["--gpu-memory-utilization", String(fraction)] }
        if let length = options.maxContext { arguments += ["--max-model-len", String(length)] }
        arguments += options.extraArguments
        return (arguments, huggingFaceEnvironment(dataDirectory, options: options))
    }
}
