/// Engine settings a user chooses per run; each contract passes through the ones its engine understands.
package struct RunOptions: Sendable, Hashable, Codable {
    /// `CUDA_VISIBLE_DEVICES`, for example `"0,1"`.
    package var gpus: String?
    /// vLLM `--tensor-parallel-size`, SGLang `--tp-size`.
    package var tensorParallelSize: Int?
    /// vLLM `--pipeline-parallel-size`, SGLang `--pp-size`.
    package var pipelineParallelSize: Int?
    /// vLLM `--data-parallel-size`, SGLang `--dp-size`: replicas of the model, each on its own GPUs.
    package var dataParallelSize: Int?
    /// vLLM `--gpu-memory-utilization`, SGLang `--mem-fraction-static`.
    package var memoryFraction: Double?
    /// vLLM `--max-model-len`, SGLang `--context-length`, llama.cpp `--ctx-size`.
    package var maxContext: Int?
    /// llama.cpp `--parallel`: how many requests it decodes at once (its slots).
    package var parallel: Int?
    /// llama.cpp `--threads`.
    package var threads: Int?
    /// llama.cpp `--n-gpu-layers`: how many layers go to the GPU.
    package var gpuLayers: Int?
    /// llama.cpp: which GGUF file of the snapshot to load, relative to it; needed when it holds several models.
    package var modelFile: String?
    /// Appended verbatim to the engine's command line.
    package var extraArguments: [String]
    /// Added to the engine's environment (after the contract's own variables, so they can be overridden).
    package var environment: [String: String]

    package init(
        gpus: String? = nil, tensorParallelSize: Int? = nil, memoryFraction: Double? = nil, maxContext: Int? = nil,
        parallel: Int? = nil, threads: Int? = nil, gpuLayers: Int? = nil, modelFile: String? = nil,
        pipelineParallelSize: Int? = nil, dataParallelSize: Int? = nil, extraArguments: [String] = [], environment: [String: String] = [:]
    ) {
        self.pipelineParallelSize = pipelineParallelSize
        self.dataParallelSize = dataParallelSize
        self.gpus = gpus
        self.tensorParallelSize = tensorParallelSize
        self.memoryFraction = memoryFraction
        self.maxContext = maxContext
        self.parallel = parallel
        self.threads = threads
        self.gpuLayers = gpuLayers
        self.modelFile = modelFile
        self.extraArguments = extraArguments
        self.environment = environment
    }

    enum CodingKeys: String, CodingKey {
        case gpus, parallel, threads
        case tensorParallelSize = "tensor_parallel_size"
        case pipelineParallelSize = "pipeline_parallel_size"
        case dataParallelSize = "data_parallel_size"
        case memoryFraction = "memory_fraction"
        case maxContext = "max_context"
        case gpuLayers = "gpu_layers"
        case modelFile = "model_file"
        case extraArguments = "extra_arguments"
        case environment
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        gpus = try container.decodeIfPresent(String.self, forKey: .gpus)
        tensorParallelSize = try container.decodeIfPresent(Int.self, forKey: .tensorParallelSize)
        pipelineParallelSize = try container.decodeIfPresent(Int.self, forKey: .pipelineParallelSize)
        dataParallelSize = try container.decodeIfPresent(Int.self, forKey: .dataParallelSize)
        memoryFraction = try container.decodeIfPresent(Double.self, forKey: .memoryFraction)
        maxContext = try container.decodeIfPresent(Int.self, forKey: .maxContext)
        parallel = try container.decodeIfPresent(Int.self, forKey: .parallel)
        threads = try container.decodeIfPresent(Int.self, forKey: .threads)
        gpuLayers = try container.decodeIfPresent(Int.self, forKey: .gpuLayers)
        modelFile = try container.decodeIfPresent(String.self, forKey: .modelFile)
        extraArguments = try container.decodeIfPresent([String].self, forKey: .extraArguments) ?? []
        environment = try container.decodeIfPresent([String: String].self, forKey: .environment) ?? [:]
    }
}
