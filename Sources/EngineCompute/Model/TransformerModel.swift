import Foundation
import ModelText

/// A decoder-only transformer (Qwen2/2.5, Qwen3, Qwen3-MoE, Llama 3.x) with weights used in place.
///
/// ``forward(_:)`` runs one batched pass over any mix of prefill and decode segments, each with
/// its own ``KVCache`` and positions: the primitive continuous batching is built on. All
/// arithmetic is f32 as transformers does it in float32 (weights widened on the fly), except the
/// KV cache, which stores f16.
///
/// Not thread-safe: drive a model from one thread or task at a time (its kernels use all of the
/// pool's threads anyway).
package final class TransformerModel: @unchecked Sendable {
    package let config: ModelConfig
    package let generationConfig: GenerationConfig
    package let pool: ThreadPool
    /// Which build of the matrix kernels the forward pass uses (``InstructionSet/preferred`` unless
    /// a test compares them).
    package let instructionSet: InstructionSet

    private struct Layer {
        var inputNorm: UnsafePointer<Float>
        var q: WeightMatrix, k: WeightMatrix, v: WeightMatrix, o: WeightMatrix
        var qBias: UnsafePointer<Float>?, kBias: UnsafePointer<Float>?, vBias: UnsafePointer<Float>?
        var qNorm: UnsafePointer<Float>?, kNorm: UnsafePointer<Float>?
        var postNorm: UnsafePointer<Float>
        var feedForward: FeedForward
    }

    /// A layer's feed-forward step: one gated MLP, or a mixture of experts.
    private enum FeedForward {
        case dense(
            gate: WeightMatrix, up: WeightMatrix, down: WeightMatrix,
            biases: (gate: UnsafePointer<Float>?, up: UnsafePointer<Float>?, down: UnsafePointer<Float>?))
        case experts(ExpertFeedForward)
    }

    /// Keeps the mapped files (or in-memory weights) alive as long as the matrices point into them.
    private let weights: any WeightSource
    private let embedding: WeightMatrix
    private let lmHead: WeightMatrix
    private let finalNorm: UnsafePointer<Float>
    private let layers: [Layer]
    private let rope: RotaryEmbedding
    /// Norm weights and biases, widened to f32 once at load.
    private var owned: [UnsafeMutablePointer<Float>] = []

    /// Loads a Hugging Face model directory: `config.json`, `generation_config.json` and the
    /// safetensors weights (single file or sharded).
    /// - Throws: ``ModelError``; an unsupported architecture names the supported ones.
    package convenience init(directory: URL, pool: ThreadPool = .shared, instructionSet: InstructionSet = .preferred) throws {
        let config = try ModelConfig(directory: directory)
        let generationConfig = try GenerationConfig(directory: directory)
        try self.init(
            config: config, generationConfig: generationConfig, weights: Checkpoint(directory: directory), pool: pool,
            instructionSet: instructionSet
        )
    }

    /// Loads a GGUF model file: configuration, stop ids and weights (kept quantized) from the file alone.
    /// - Throws: ``ModelError``; an unsupported architecture or tensor type is named.
    package convenience init(gguf url: URL, pool: ThreadPool = .shared, instructionSet: InstructionSet = .preferred) throws {
        try self.init(gguf: GGUFFile(url: url), pool: pool, instructionSet: instructionSet)
    }

    /// Builds the model of an opened GGUF file.
    package convenience init(gguf file: GGUFFile, pool: ThreadPool = .shared, instructionSet: InstructionSet = .preferred) throws {
        let config = try ModelConfig(gguf: file)
        try self.init(
            config: config, generationConfig: GenerationConfig(gguf: file), weights: GGUFWeights(file: file, config: config), pool: pool,
            instructionSet: instructionSet
        )
    }

    /// Loads a GGUF file (a path ending in `.gguf`) or a Hugging Face model directory.
    package convenience init(path url: URL, pool: ThreadPool = .shared, instructionSet: InstructionSet = .preferred) throws {
        if url.isGGUF {
            try self.init(gguf: url, pool: pool, instructionSet: instructionSet)
        } else {
            try self.init(directory: url, pool: pool, instructionSet: instructionSet)
        }
    }

    /// Builds a model from named tensors in transformers' naming (`model.layers.N.self_attn.q_proj.weight`...).
    package init(
        config: ModelConfig, generationConfig: GenerationConfig, weights: any WeightSource, pool: ThreadPool = .shared,
        instructionSet: InstructionSet = .preferred
    ) throws {
        self.config = config
        self.generationConfig = generationConfig
        self.pool = pool
        self.instructionSet = instructionSet
        self.weights = weights
        guard config.headDim % 8 == 0 else {
            throw ModelError(.unsupportedArchitecture, "head_dim \(config.headDim) is not a multiple of 8, which the attention kernel needs")
        }
        var owned: [UnsafeMutablePointer<Float>] = []
        func tensor(_ name: String) throws -> TensorView {
            guard let tensor = weights.tensor(named: name) else {
                throw ModelError(.invalidTensor, "the checkpoint has no tensor \(name), which \(config.architecture.rawValue) needs")
            }
            return tensor
        }
        func matrix(_ name: String, _ rows: Int, _ columns: Int) throws -> WeightMatrix {
            try WeightMatrix(tensor(name), rows: rows, columns: columns)
        }
        func vector(_ name: String, _ count: Int) throws -> UnsafePointer<Float> {
            let tensor = try tensor(name)
            guard tensor.shape == [count] else {
                throw ModelError(.invalidTensor, "tensor \(name) has shape \(tensor.shape), expected [\(count)]")
            }
            guard tensor.blockType == nil, [.bf16, .f16, .f32].contains(tensor.dtype) else {
                throw ModelError(.invalidTensor, "tensor \(name) is \(tensor.dtype.rawValue); weights must be BF16, F16 or F32")
            }
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
            for i in 0..<count { buffer[i] = tensor.float(at: i) }
            owned.append(buffer)
            return UnsafePointer(buffer)
        }
        let hidden = config.hiddenSize, hd = config.headDim
        let qDim = config.headCount * hd, kvDim = config.kvHeadCount * hd, inter = config.intermediateSize
        do {
            embedding = try matrix("model.embed_tokens.weight", config.vocabSize, hidden)
            if config.tieWordEmbeddings {
                lmHead = embedding
            } else {
                lmHead = try matrix("lm_head.weight", config.vocabSize, hidden)
            }
            finalNorm = try vector("model.norm.weight", hidden)
            layers = try (0..<config.layerCount).map { i in
                let p = "model.layers.\(i)."
                let attentionBias = config.attentionBias
                let mlpBias = config.mlpBias
                let feedForward: FeedForward
                if let experts = config.experts, experts.sparseLayers.contains(i) {
                    feedForward = .experts(try ExpertFeedForward(layer: i, config: experts, hidden: hidden, matrix: matrix))
                } else {
                    feedForward = .dense(
                        gate: try matrix(p + "mlp.gate_proj.weight", inter, hidden),
                        up: try matrix(p + "mlp.up_proj.weight", inter, hidden),
                        down: try matrix(p + "mlp.down_proj.weight", hidden, inter),
                        biases: (
                            mlpBias ? try vector(p + "mlp.gate_proj.bias", inter) : nil, mlpBias ? try vector(p + "mlp.up_proj.bias", inter) : nil,
                            mlpBias ? try vector(p + "mlp.down_proj.bias", hidden) : nil
                        )
                    )
                }
                return Layer(
                    inputNorm: try vector(p + "input_layernorm.weight", hidden),
                    q: try matrix(p + "self_attn.q_proj.weight", qDim, hidden),
                    k: try matrix(p + "self_attn.k_proj.weight", kvDim, hidden),
                    v: try matrix(p + "self_attn.v_proj.weight", kvDim, hidden),
                    o: try matrix(p + "self_attn.o_proj.weight", hidden, qDim),
                    qBias: attentionBias ? try vector(p + "self_attn.q_proj.bias", qDim) : nil,
                    kBias: attentionBias ? try vector(p + "self_attn.k_proj.bias", kvDim) : nil,
                    vBias: attentionBias ? try vector(p + "self_attn.v_proj.bias", kvDim) : nil,
                    qNorm: config.hasQKNorm ? try vector(p + "self_attn.q_norm.weight", hd) : nil,
                    kNorm: config.hasQKNorm ? try vector(p + "self_attn.k_norm.weight", hd) : nil,
                    postNorm: try vector(p + "post_attention_layernorm.weight", hidden),
                    feedForward: feedForward
                )
            }
        } catch {
            owned.forEach { $0.deallocate() }
            throw error
        }
        self.owned = owned
        rope = RotaryEmbedding(config: config)
    }

    deinit {
        owned.forEach { $0.deallocate() }
    }

    /// An empty cache for one sequence of this model.
    package func makeCache(capacity: Int = 256) -> KVCache {
        KVCache(config: config, capacity: capacity)
    }

    /// Runs every segment's tokens through the model in one pass, appending their keys and values
    /// to each segment's cache.
    ///
    /// - Returns: per segment, the logits rows its ``LogitsSelection`` asks for (`vocabSize` floats each).
    /// - Throws: ``ModelError`` when a token id is out of range or one cache appears twice.
    package func forward(_ segments: [ForwardSegment]) throws -> [[[Float]]] {
        let hidden = config.hiddenSize, hd = config.headDim, vocab = config.vocabSize
        let heads = config.headCount, kvHeads = config.kvHeadCount, group = heads / kvHeads
        let qDim = heads * hd, kvDim = kvHeads * hd, inter = config.intermediateSize
        let eps = config.rmsNormEps

        var caches = Set<ObjectIdentifier>()
        var positions: [Int] = []
        var owners: [Int] = []
        for (index, segment) in segments.enumerated() {
            guard caches.insert(ObjectIdentifier(segment.cache)).inserted else {
                throw ModelError(.invalidTensor, "one KV cache appears in two segments of the same forward pass")
            }
            for (offset, token) in segment.tokens.enumerated() {
                guard token >= 0, Int(token) < vocab else {
                    throw ModelError(.invalidTensor, "token id \(token) is outside the vocabulary of \(vocab)")
                }
                positions.append(segment.cache.count + offset)
                owners.append(index)
            }
        }
        let count = positions.count
        guard count > 0 else { return segments.map { _ in [] } }
        for segment in segments { segment.cache.reserve(segment.cache.count + segment.tokens.count) }
        let maxLength = (positions.max() ?? 0) + 1

        let x = UnsafeMutablePointer<Float>.allocate(capacity: count * hidden)
        let normed = UnsafeMutablePointer<Float>.allocate(capacity: count * max(hidden, qDim))
        let q = UnsafeMutablePointer<Float>.allocate(capacity: count * qDim)
        let k = UnsafeMutablePointer<Float>.allocate(capacity: count * kvDim)
        let v = UnsafeMutablePointer<Float>.allocate(capacity: count * kvDim)
        let attended = UnsafeMutablePointer<Float>.allocate(capacity: count * qDim)
        let gate = UnsafeMutablePointer<Float>.allocate(capacity: count * inter)
        let up = UnsafeMutablePointer<Float>.allocate(capacity: count * inter)
        let rotations = UnsafeMutablePointer<Float>.allocate(capacity: count * hd)
        defer {
            for buffer in [x, normed, q, k, v, attended, gate, up, rotations] { buffer.deallocate() }
        }
        for t in 0..<count {
            rope.table(position: positions[t], into: rotations + t * hd)
        }
        let flatTokens = segments.flatMap(\.tokens)
        for t in 0..<count {
            embedding.copyRow(Int(flatTokens[t]), to: x + t * hidden)
        }
        let cacheOf = segments.map(\.cache)
        let scale = 1 / Float(hd).squareRoot()

        for (index, layer) in layers.enumerated() {
            for t in 0..<count {
                VectorOps.rmsNorm(x + t * hidden, weight: layer.inputNorm, eps: eps, count: hidden, output: normed + t * hidden)
            }
            let qkv = [
                Projection(layer.q, y: q, yStride: qDim, bias: layer.qBias),
                Projection(layer.k, y: k, yStride: kvDim, bias: layer.kBias),
                Projection(layer.v, y: v, yStride: kvDim, bias: layer.vBias),
            ]
            matmul(qkv, x: normed, xStride: hidden, tokens: count, pool: pool, instructionSet: instructionSet)
            for t in 0..<count {
                if let qNorm = layer.qNorm, let kNorm = layer.kNorm {
                    for h in 0..<heads {
                        let row = q + t * qDim + h * hd
                        VectorOps.rmsNorm(row, weight: qNorm, eps: eps, count: hd, output: row)
                    }
                    for h in 0..<kvHeads {
                        let row = k + t * kvDim + h * hd
                        VectorOps.rmsNorm(row, weight: kNorm, eps: eps, count: hd, output: row)
                    }
                }
                rope.apply(q + t * qDim, heads: heads, table: rotations + t * hd)
                rope.apply(k + t * kvDim, heads: kvHeads, table: rotations + t * hd)
                let cache = cacheOf[owners[t]]
                let keys = cache.keys[index] + positions[t] * kvDim
                let values = cache.values[index] + positions[t] * kvDim
                for i in 0..<kvDim {
                    keys[i] = Float16(k[t * kvDim + i])
                    values[i] = Float16(v[t * kvDim + i])
                }
            }
            pool.forEachRange(count * kvHeads) { range in
                let scores = UnsafeMutablePointer<Float>.allocate(capacity: group * maxLength)
                defer { scores.deallocate() }
                for job in range {
                    let t = job / kvHeads, g = job % kvHeads
                    let cache = cacheOf[owners[t]]
                    Attention.attend(
                        query: q + t * qDim + g * group * hd, groupSize: group, headDim: hd,
                        keys: cache.keys[index], values: cache.values[index], width: kvDim, offset: g * hd,
                        length: positions[t] + 1, scale: scale, scores: scores,
                        output: attended + t * qDim + g * group * hd
                    )
                }
            }
            // The residual connections are folded into the output projections: they add to `x`.
            matmul(
                layer.o, x: attended, xStride: qDim, tokens: count, y: x, yStride: hidden, accumulate: true, pool: pool,
                instructionSet: instructionSet)

            for t in 0..<count {
                VectorOps.rmsNorm(x + t * hidden, weight: layer.postNorm, eps: eps, count: hidden, output: normed + t * hidden)
            }
            switch layer.feedForward {
            case .dense(let gateWeights, let upWeights, let downWeights, let biases):
                gatedMatmul(
                    gate: Projection(gateWeights, y: gate, yStride: inter, bias: biases.gate),
                    up: Projection(upWeights, y: up, yStride: inter, bias: biases.up),
                    x: normed, xStride: hidden, tokens: count, pool: pool, instructionSet: instructionSet
                )
                matmul(
                    downWeights, x: gate, xStride: inter, tokens: count, y: x, yStride: hidden, bias: biases.down,
                    accumulate: true, pool: pool, instructionSet: instructionSet
                )
            case .experts(let experts):
                experts.apply(normed: normed, x: x, hidden: hidden, tokens: count, pool: pool, instructionSet: instructionSet)
            }
        }
        for segment in segments { segment.cache.count += segment.tokens.count }

        // Only the rows asked for go through the (large) vocabulary projection.
        var selected: [Int] = []
        var start = 0
        for segment in segments {
            switch segment.logits {
            case .none: break
            case .last: selected.append(start + segment.tokens.count - 1)
            case .all: selected.append(contentsOf: start..<start + segment.tokens.count)
            }
            start += segment.tokens.count
        }
        guard !selected.isEmpty else { return segments.map { _ in [] } }
        for (row, t) in selected.enumerated() {
            VectorOps.rmsNorm(x + t * hidden, weight: finalNorm, eps: eps, count: hidden, output: normed + row * hidden)
        }
        let logits = UnsafeMutablePointer<Float>.allocate(capacity: selected.count * vocab)
        defer { logits.deallocate() }
        matmul(lmHead, x: normed, xStride: hidden, tokens: selected.count, y: logits, yStride: vocab, pool: pool, instructionSet: instructionSet)
        var row = 0
        return segments.map { segment in
            let rows: Int
            switch segment.logits {
            case .none: rows = 0
            case .last: rows = 1
            case .all: rows = segment.tokens.count
            }
            defer { row += rows }
            return (row..<row + rows).map { r in Array(UnsafeBufferPointer(start: logits + r * vocab, count: vocab)) }
        }
    }
}
