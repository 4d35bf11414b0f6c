import ModelStore

/// `python3 -m sglang.launch_server --model-path <dir> --host 127.0.0.1 --port P --served-model-name N [...]`
/// (docs/design/engine-launch.md, SGLang).
package struct SGLangContract: EngineContract {
    package init() {}

    package var kind: EngineKind { .sglang }
    package var readinessPath: String { "/health" }
    package var livenessPath: String { "/health" }
    package var installHint: String {
        "install it with `pip install \"sglang[all]\"` or set the SGLang executable in the configuration"
    }

    package func arguments(for spec: LaunchSpec, port: Int, dataDirectory: DataDirectory) throws -> (
        arguments: [String], environment: [String: String]
    ) {
        let options = spec.options
        var arguments = [
            "--model-path", try requireModelPath(spec), "--host", "127.0.0.1", "--port", String(port),
            "--served-model-name", spec.servedName,
        ]
        if let size = options.tensorParallelSize { arguments += ["--tp-size", String(size)] }
        if let fraction = options.memoryFraction { arguments += ["--mem-fraction-static", String(fraction)] }
        if let length = options.maxContext { arguments += ["--context-length", String(length)] }
        arguments += options.extraArguments
        return (arguments, huggingFaceEnvironment(dataDirectory, options: options))
    }
}
