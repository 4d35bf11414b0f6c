import Foundation

/// How much GPU memory a run needs, roughly: its weights and its KV cache at the run's context
/// (docs/design/gpus.md, Placement).
package struct MemoryNeed: Sendable, Hashable {
    package var weightsBytes: Int64
    package var kvCacheBytes: Int64
    /// The context the KV cache is counted at; nil when the model does not say (a GGUF file without a config).
    package var context: Int?

    package var totalBytes: Int64 { weightsBytes + kvCacheBytes }

    /// "14.2 GiB (weights 13.2 GiB + KV cache 1.0 GiB at 32768 tokens)".
    package var description: String {
        let kv = context.map { " + KV cache \(gib(kvCacheBytes)) at \($0) tokens" } ?? ", KV cache not counted"
        return "\(gib(totalBytes)) (weights \(gib(weightsBytes))\(kv))"
    }

    /// The estimate for a run: the snapshot's weight files (for llama.cpp, the GGUF file it loads), and 2 (K and V)
    /// × layers × KV heads × head size × context × 2 bytes (16-bit cache) from its `config.json`, the context being the
    /// run's `max_context` or else the model's own maximum (what vLLM and SGLang default to).
    package static func estimate(_ spec: LaunchSpec) throws -> MemoryNeed {
        guard let path = spec.modelPath else { return MemoryNeed(weightsBytes: 0, kvCacheBytes: 0, context: nil) }
        let weights: Int64
        if spec.engine == .llamacpp {
            weights = fileSize(try LlamaCppContract.modelFile(in: path, named: spec.options.modelFile))
        } else {
            let files = FileManager.default.enumerator(atPath: path)?.compactMap { $0 as? String } ?? []
            let weightFiles = files.filter { file in [".safetensors", ".bin", ".pt", ".pth", ".gguf"].contains { file.hasSuffix($0) } }
            weights = weightFiles.reduce(0) { $0 + fileSize("\(path)/\($1)") }
        }
        guard let data = FileManager.default.contents(atPath: "\(path)/config.json"),
            let config = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return MemoryNeed(weightsBytes: weights, kvCacheBytes: 0, context: nil) }
        // Multimodal configs keep the language model's numbers in `text_config`.
        let text = config["text_config"] as? [String: Any] ?? config
        func int(_ key: String) -> Int? { (text[key] as? NSNumber)?.intValue }
        guard let layers = int("num_hidden_layers"), let heads = int("num_attention_heads"), heads > 0,
            let context = spec.options.maxContext ?? int("max_position_embeddings")
        else { return MemoryNeed(weightsBytes: weights, kvCacheBytes: 0, context: nil) }
        let kvHeads = int("num_key_value_heads") ?? heads
        let headSize = int("head_dim") ?? (int("hidden_size") ?? 0) / heads
        let kv = Int64(2) * Int64(layers) * Int64(kvHeads) * Int64(headSize) * Int64(context) * 2
        return MemoryNeed(weightsBytes: weights, kvCacheBytes: kv, context: context)
    }

    /// One host's part of a need spread evenly over `nodes` hosts (a multi-node run, docs/multi-node.md).
    package func perHost(of nodes: Int) -> MemoryNeed {
        let nodes = Int64(max(1, nodes))
        return MemoryNeed(weightsBytes: (weightsBytes + nodes - 1) / nodes, kvCacheBytes: (kvCacheBytes + nodes - 1) / nodes, context: context)
    }

    /// A file's size, following symbolic links (snapshot files link to blobs).
    private static func fileSize(_ path: String) -> Int64 {
        let resolved = URL(filePath: path).resolvingSymlinksInPath().path(percentEncoded: false)
        return ((try? FileManager.default.attributesOfItem(atPath: resolved))?[.size] as? NSNumber)?.int64Value ?? 0
    }
}

/// Bytes as GiB with one decimal.
func gib(_ bytes: Int64) -> String { String(format: "%.1f GiB", Double(bytes) / Double(1 << 30)) }

/// Which GPUs a run without `gpus` gets (docs/design/gpus.md, Placement).
package enum GPUPlacement {
    /// The engines placed on GPUs: vLLM, SGLang, and llama.cpp unless it keeps every layer on the CPU. The built-in
    /// engine runs on the CPU, and Ollama's shared server places its models itself.
    package static func usesGPUs(_ spec: LaunchSpec) -> Bool {
        switch spec.engine {
        case .vllm, .sglang: true
        case .llamacpp: spec.options.gpuLayers != 0
        case .builtin, .ollama: false
        }
    }

    /// How many GPUs a run spans on this host: tensor × pipeline × data parallel sizes, shared evenly by the hosts of
    /// a multi-node run.
    package static func gpuCount(_ options: RunOptions) -> Int {
        let all = [options.tensorParallelSize, options.pipelineParallelSize, options.dataParallelSize].reduce(1) { $0 * max(1, $1 ?? 1) }
        return max(1, all / max(1, options.multiNode?.nodes ?? 1))
    }

    /// The GPUs for a run needing `need` over `count` GPUs (an equal share on each): those with the most free memory
    /// among the ones no run holds, each with room for its share.
    /// - Parameter held: GPU index → the name of the run holding it.
    /// - Returns: the chosen indices, in ascending order.
    /// - Throws: ``LaunchError`` with ``LaunchError/Code/noGPU`` when they do not fit, with the numbers.
    package static func choose(need: MemoryNeed, count: Int, gpus: [GPU], held: [Int: String], run: String) throws -> [Int] {
        let share = (need.totalBytes + Int64(count) - 1) / Int64(count)
        let free = gpus.filter { held[$0.index] == nil }.sorted { ($0.memoryFreeMiB, -$0.index) > ($1.memoryFreeMiB, -$1.index) }
        let fitting = free.filter { Int64($0.memoryFreeMiB) << 20 >= share }
        guard fitting.count >= count else {
            let perGPU = count > 1 ? " across \(count) GPUs (\(gib(share)) on each)" : ""
            let states = gpus.sorted { $0.index < $1.index }.map { gpu in
                held[gpu.index].map { "GPU \(gpu.index) held by run \($0)" }
                    ?? "GPU \(gpu.index) (\(gpu.name)) \(gib(Int64(gpu.memoryFreeMiB) << 20)) free of \(gib(Int64(gpu.memoryTotalMiB) << 20))"
            }
            throw LaunchError(
                code: .noGPU,
                message: "\(run) needs about \(need.description)\(perGPU), and no GPU placement fits: "
                    + "\(states.joined(separator: "; ")). Free a GPU, lower max_context, or name the GPUs with gpus")
        }
        return fitting.prefix(count).map(\.index).sorted()
    }

    /// The indices a `gpus` value (`CUDA_VISIBLE_DEVICES`) names; UUIDs and other forms name none.
    package static func indices(_ gpus: String) -> [Int] {
        gpus.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }
}
