/// Engine settings a user chooses per run; each contract passes through the ones its engine understands.
package struct RunOptions: Sendable, Hashable, Codable {
    /// `CUDA_VISIBLE_DEVICES`, for example `"0,1"`.
    package var gpus: String?
    /// vLLM `--tensor-parallel-size`, SGLang `--tp-size`.
    package var tensorParallelSize: Int?
    /// vLLM `--gpu-memory-utilization`, SGLang `--mem-fraction-static`.
    package var memoryFraction: Double?
    /// vLLM `--max-model-len`, SGLang `--context-length`.
    package var maxContext: Int?
    /// Appended verbatim to the engine's command line.
    package var extraArguments: [String]
    /// Added to the engine's environment (after the contract's own variables, so they can be overridden).
    package var environment: [String: String]

    package init(
        gpus: String? = nil, tensorParallelSize: Int? = nil, memoryFraction: Double? = nil, maxContext: Int? = nil,
        extraArguments: [String] = [], environment: [String: String] = [:]
    ) {
        self.gpus = gpus
        self.tensorParallelSize = tensorParallelSize
        self.memoryFraction = memoryFraction
        self.maxContext = maxContext
        self.extraArguments = extraArguments
        self.environment = environment
    }

    enum CodingKeys: String, CodingKey {
        case gpus
        case tensorParallelSize = "tensor_parallel_size"
        case memoryFraction = "memory_fraction"
        case maxContext = "max_context"
        case extraArguments = "extra_arguments"
        case environment
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        gpus = try container.decodeIfPresent(String.self, forKey: .gpus)
        tensorParallelSize = try container.decodeIfPresent(Int.self, forKey: .tensorParallelSize)
        memoryFraction = try container.decodeIfPresent(Double.self, forKey: .memoryFraction)
        maxContext = try container.decodeIfPresent(Int.self, forKey: .maxContext)
        extraArguments = try container.decodeIfPresent([String].self, forKey: .extraArguments) ?? []
        environment = try container.decodeIfPresent([String: String].self, forKey: .environment) ?? [:]
    }
}
