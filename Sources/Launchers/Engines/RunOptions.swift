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
    /// llama.cpp and the built-in engine: which GGUF file of the snapshot to load, relative to it; needed when it
    /// holds several models.
    package var modelFile: String?
    /// The built-in engine: quantize the safetensors weights on load (`--quantize q8_0|q4_0`).
    package var quantization: String?
    /// vLLM across several hosts (docs/multi-node.md): this host's part of the run.
    package var multiNode: MultiNode?
    /// Appended verbatim to the engine's command line.
    package var extraArguments: [String]
    /// Added to the engine's environment (after the contract's own variables, so they can be overridden).
    package var environment: [String: String]

    package init(
        gpus: String? = nil, tensorParallelSize: Int? = nil, memoryFraction: Double? = nil, maxContext: Int? = nil,
        parallel: Int? = nil, threads: Int? = nil, gpuLayers: Int? = nil, modelFile: String? = nil,
        pipelineParallelSize: Int? = nil, dataParallelSize: Int? = nil, multiNode: MultiNode? = nil, extraArguments: [String] = [],
        environment: [String: String] = [:], quantization: String? = nil
    ) {
        self.quantization = quantization
        self.multiNode = multiNode
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
        case gpus, parallel, threads, quantization
        case tensorParallelSize = "tensor_parallel_size"
        case pipelineParallelSize = "pipeline_parallel_size"
        case dataParallelSize = "data_parallel_size"
        case memoryFraction = "memory_fraction"
        case maxContext = "max_context"
        case gpuLayers = "gpu_layers"
        case modelFile = "model_file"
        case multiNode = "multi_node"
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
        quantization = try container.decodeIfPresent(String.self, forKey: .quantization)
        multiNode = try container.decodeIfPresent(MultiNode.self, forKey: .multiNode)
        extraArguments = try container.decodeIfPresent([String].self, forKey: .extraArguments) ?? []
        environment = try container.decodeIfPresent([String: String].self, forKey: .environment) ?? [:]
    }
}

/// One host's part of a vLLM run spread over several hosts with vLLM's multiprocessing backend (docs/multi-node.md):
/// node 0, the head, serves the API; every other node runs `vllm serve --headless`, a worker without an HTTP port.
package struct MultiNode: Sendable, Hashable, Codable {
    /// How many hosts the run spans (`--nnodes`).
    package var nodes: Int
    /// This host's rank (`--node-rank`): 0 is the head.
    package var rank: Int
    /// The head's address on the cluster network (`--master-addr`), the same on every host.
    package var masterAddress: String
    /// The port of the head's distributed rendezvous (`--master-port`), the same on every host.
    package var masterPort: Int

    package init(nodes: Int, rank: Int, masterAddress: String, masterPort: Int) {
        self.nodes = nodes
        self.rank = rank
        self.masterAddress = masterAddress
        self.masterPort = masterPort
    }

    /// A worker: vLLM's headless side, supervised by its process alone.
    package var isWorker: Bool { rank > 0 }

    enum CodingKeys: String, CodingKey {
        case nodes, rank
        case masterAddress = "master_address"
        case masterPort = "master_port"
    }
}
