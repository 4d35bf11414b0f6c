import FoundationEssentials
import Glibc

/// `POST /api/v1/models/start`.
package struct StartRequest: Codable, Sendable {
    /// A catalog ref or `owner/name`.
    package var model: String
    /// `builtin`, `vllm`, `sglang`, `ollama` or `llamacpp`; default: the catalog's `default_engine`, else `builtin`.
    package var engine: String?
    /// A unique run name (also the model name clients send to the engine); default from the model.
    package var name: String?
    /// Which local version: a commit, unique prefix or revision; default the newest ready one.
    package var revision: String?
    package var source: String?
    /// `CUDA_VISIBLE_DEVICES`.
    package var gpus: String?
    package var tensorParallel: Int?
    /// vLLM `--pipeline-parallel-size`, SGLang `--pp-size`.
    package var pipelineParallel: Int?
    /// vLLM `--data-parallel-size`, SGLang `--dp-size`.
    package var dataParallel: Int?
    package var memoryFraction: Double?
    package var maxContext: Int?
    /// llama.cpp: requests decoded at once (`--parallel`).
    package var parallel: Int?
    /// llama.cpp: CPU threads (`--threads`).
    package var threads: Int?
    /// llama.cpp: layers offloaded to the GPU (`--n-gpu-layers`).
    package var gpuLayers: Int?
    /// llama.cpp: the GGUF file to load, relative to the snapshot; needed when it holds several.
    package var modelFile: String?
    /// vLLM across hosts (docs/multi-node.md): how many hosts the run spans; with `master_addr`.
    package var nodes: Int?
    /// This host's rank among them: 0 (the default) is the head, which serves the API; the others are workers.
    package var nodeRank: Int?
    /// The head's address on the cluster network.
    package var masterAddr: String?
    /// The head's rendezvous port (default 29501, vLLM's).
    package var masterPort: Int?
    /// Appended verbatim to the engine's command line.
    package var engineArgs: [String]?
    /// The weights' quantization, one the catalog offers (`q4_k_m`, `q8_0`, `bf16`): the built-in engine and llama.cpp
    /// load the matching file of the model's GGUF repository (pulled if needed), or the built-in engine quantizes
    /// the safetensors on load (`q8_0`, `q4_0`) (docs/quantization.md).
    package var quantization: String?
    /// Unload the run after this long without requests (``KeepAlive`` forms); default: keep it until stopped.
    package var keepAlive: KeepAliveText?

    package init(
        model: String, engine: String? = nil, name: String? = nil, revision: String? = nil, source: String? = nil,
        gpus: String? = nil, tensorParallel: Int? = nil, memoryFraction: Double? = nil, maxContext: Int? = nil,
        engineArgs: [String]? = nil, keepAlive: String? = nil, parallel: Int? = nil, threads: Int? = nil,
        gpuLayers: Int? = nil, modelFile: String? = nil, pipelineParallel: Int? = nil, dataParallel: Int? = nil,
        nodes: Int? = nil, nodeRank: Int? = nil, masterAddr: String? = nil, masterPort: Int? = nil, quantization: String? = nil
    ) {
        self.quantization = quantization
        self.nodes = nodes
        self.nodeRank = nodeRank
        self.masterAddr = masterAddr
        self.masterPort = masterPort
        self.pipelineParallel = pipelineParallel
        self.dataParallel = dataParallel
        self.parallel = parallel
        self.threads = threads
        self.gpuLayers = gpuLayers
        self.modelFile = modelFile
        self.keepAlive = keepAlive.map(KeepAliveText.init)
        self.model = model
        self.engine = engine
        self.name = name
        self.revision = revision
        self.source = source
        self.gpus = gpus
        self.tensorParallel = tensorParallel
        self.memoryFraction = memoryFraction
        self.maxContext = maxContext
        self.engineArgs = engineArgs
    }

    enum CodingKeys: String, CodingKey {
        case model, engine, name, revision, source, gpus, parallel, threads, nodes, quantization
        case nodeRank = "node_rank"
        case masterAddr = "master_addr"
        case masterPort = "master_port"
        case gpuLayers = "gpu_layers"
        case modelFile = "model_file"
        case tensorParallel = "tensor_parallel"
        case pipelineParallel = "pipeline_parallel"
        case dataParallel = "data_parallel"
        case memoryFraction = "memory_fraction"
        case maxContext = "max_context"
        case engineArgs = "engine_args"
        case keepAlive = "keep_alive"
    }
}

/// A run as the API reports it (`modelctl ps`).
package struct RunSummary: Codable, Sendable, Hashable {
    package var runID: String
    package var name: String
    package var model: String
    package var engine: String
    /// `starting`, `ready`, `stopping`, `stopped` or `failed`.
    package var state: String
    package var desiredState: String
    package var pid: Int32?
    package var port: Int?
    /// `http://127.0.0.1:<port>`: the engine's OpenAI-compatible base URL.
    package var endpoint: String?
    package var servedName: String
    /// The GPUs it holds (`CUDA_VISIBLE_DEVICES`), as asked or as placed; nil on the CPU.
    package var gpus: String?
    package var restarts: Int
    package var exitStatus: Int?
    package var reason: String?
    /// Seconds without requests after which the run is unloaded; nil: kept until stopped.
    package var keepAlive: Int?
    /// Started by the gateway for a request (unloaded when idle, evicted first when runs are at their limit).
    package var onDemand: Bool
    /// When its last request ended (or it became ready, if none came since); nil for runs not loaded.
    package var lastUsedAt: Date?
    package var createdAt: Date
    package var updatedAt: Date

    package init(
        runID: String, name: String, model: String, engine: String, state: String, desiredState: String, pid: Int32?,
        port: Int?, endpoint: String?, servedName: String, restarts: Int, exitStatus: Int?, reason: String?,
        keepAlive: Int? = nil, onDemand: Bool = false, lastUsedAt: Date? = nil, createdAt: Date, updatedAt: Date, gpus: String? = nil
    ) {
        self.gpus = gpus
        self.keepAlive = keepAlive
        self.onDemand = onDemand
        self.lastUsedAt = lastUsedAt
        self.runID = runID
        self.name = name
        self.model = model
        self.engine = engine
        self.state = state
        self.desiredState = desiredState
        self.pid = pid
        self.port = port
        self.endpoint = endpoint
        self.servedName = servedName
        self.restarts = restarts
        self.exitStatus = exitStatus
        self.reason = reason
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    enum CodingKeys: String, CodingKey {
        case name, model, engine, state, pid, port, endpoint, restarts, reason, gpus
        case runID = "run_id"
        case desiredState = "desired_state"
        case servedName = "served_name"
        case exitStatus = "exit_status"
        case keepAlive = "keep_alive"
        case onDemand = "on_demand"
        case lastUsedAt = "last_used_at"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }
}

/// `GET /api/v1/models/running/{id}/logs` without `follow`.
package struct RunLogs: Codable, Sendable {
    package var runID: String
    package var lines: [String]
    package init(runID: String, lines: [String]) {
        self.runID = runID
        self.lines = lines
    }
    enum CodingKeys: String, CodingKey {
        case lines
        case runID = "run_id"
    }
}

/// `GET /api/v1/models/{ref}` (`modelctl show`): what a reference names and what this host has of it.
package struct ModelDetail: Codable, Sendable {
    package var ref: String
    package var source: String
    package var repo: String
    /// The catalog entry (sizes with local state) when the model is in the catalog.
    package var catalog: CatalogModelInfo?
    package var versions: [LocalVersionInfo]
    package var runs: [RunSummary]

    package init(ref: String, source: String, repo: String, catalog: CatalogModelInfo?, versions: [LocalVersionInfo], runs: [RunSummary]) {
        self.ref = ref
        self.source = source
        self.repo = repo
        self.catalog = catalog
        self.versions = versions
        self.runs = runs
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(ref, forKey: .ref)
        try container.encode(source, forKey: .source)
        try container.encode(repo, forKey: .repo)
        if let catalog { try container.encode(catalog, forKey: .catalog) } else { try container.encodeNil(forKey: .catalog) }
        try container.encode(versions, forKey: .versions)
        try container.encode(runs, forKey: .runs)
    }

    enum CodingKeys: String, CodingKey { case ref, source, repo, catalog, versions, runs }
}
