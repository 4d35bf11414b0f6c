import ModelStore

/// `vllm serve <dir> --host 127.0.0.1 --port P --served-model-name N [...]` (docs/design/engine-launch.md, vLLM); a
/// worker of a multi-node run is `vllm serve <dir> [...] --nnodes N --node-rank R --master-addr A --master-port P
/// --headless`, without an HTTP port (docs/multi-node.md).
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
        var arguments = ["serve", try requireModelPath(spec)]
        if spec.servesHTTP { arguments += ["--host", "127.0.0.1", "--port", String(port), "--served-model-name", spec.servedName] }
        if let size = options.tensorParallelSize { arguments += ["--tensor-parallel-size", String(size)] }
        if let size = options.pipelineParallelSize { arguments += ["--pipeline-parallel-size", String(size)] }
        if let size = options.dataParallelSize { arguments += ["--data-parallel-size", String(size)] }
        if let fraction = options.memoryFraction { arguments += ["--gpu-memory-utilization", String(fraction)] }
        if let length = options.maxContext { arguments += ["--max-model-len", String(length)] }
        if let node = options.multiNode {
            try Self.check(node)
            arguments += [
                "--nnodes", String(node.nodes), "--node-rank", String(node.rank), "--master-addr", node.masterAddress,
                "--master-port", String(node.masterPort),
            ]
            if node.isWorker { arguments.append("--headless") }
        }
        arguments += options.extraArguments
        return (arguments, huggingFaceEnvironment(dataDirectory, options: options))
    }

    /// A multi-node part vLLM would accept: at least two hosts, a rank among them, a head address and a port.
    static func check(_ node: MultiNode) throws {
        guard node.nodes >= 2 else {
            throw LaunchError(code: .invalidSpec, message: "a multi-node run spans 2 hosts or more, not \(node.nodes)")
        }
        guard (0..<node.nodes).contains(node.rank) else {
            throw LaunchError(
                code: .invalidSpec, message: "node rank \(node.rank) is not one of the run's \(node.nodes) hosts (0 to \(node.nodes - 1))")
        }
        guard !node.masterAddress.isEmpty, !node.masterAddress.hasPrefix("-"),
            node.masterAddress.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ".-:_".contains($0)) })
        else {
            throw LaunchError(code: .invalidSpec, message: "master address \"\(node.masterAddress)\" is not a host name or IP address")
        }
        guard (1...65535).contains(node.masterPort) else {
            throw LaunchError(code: .invalidSpec, message: "master port \(node.masterPort) is not a port (1 to 65535)")
        }
    }
}
