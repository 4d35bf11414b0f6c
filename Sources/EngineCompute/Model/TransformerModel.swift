import Foundation
import ModelText

/// A decoder-only transformer (Qwen2/2.5, Qwen3, Qwen3-MoE, Llama 3.x and SmolLM2, Mistral, Phi-3, Gemma 3
/// text) with weights used in place.
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
        var qBias: UnsafePointer<Float>?, kBias: UnsafePointer<Float>?, vBias: UnsafePointer<Float>?, oBias: UnsafePointer<Float>?
        var qNorm: UnsafePointer<Float>?, kNorm: UnsafePointer<Float>?
        /// Gemma 3 normalises the attention output before the residual add; nil elsewhere.
        var postAttentionNorm: UnsafePointer<Float>?
        /// The feed-forward's input norm (`post_attention_layernorm`, or Gemma's `pre_feedforward_layernorm`).
        var feedForwardNorm: UnsafePointer<Float>
        /// Gemma 3 normalises the MLP output before the residual add; nil elsewhere.
        var postFeedForwardNorm: UnsafePointer<Float>?
        var feedForward: FeedForward
        /// Positions a sliding-window layer attends to; nil for full attention.
        var window: Int?
        /// Whether the layer rotates with the local RoPE base (Gemma 3's sliding-window layers).
        var localRope: Bool
    }

    /// A layer's feed-forward step: one gated MLP, or a mixture of experts.
    private enum FeedForward {
        case dense(GatedMLP)
        case experts(ExpertFeedForward)
    }

    /// Keeps the mapped files (or in-memory weights) alive as long as the matrices point into them.
    private let weights: any WeightSource
    private let embedding: WeightMatrix
    private let lmHead: WeightMatrix
    private let finalNorm: UnsafePointer<Float>
    private let layers: [Layer]
    private let rope: RotaryEmbedding
    /// The rotation of the sliding-window layers when they have a RoPE base of their own.
    private let localRope: RotaryEmbedding?
    /// Norm weights and biases, widened to f32 once at load.
    private var owned: [UnsafeMutablePointer<Float>] = []

    /// Loads a Hugging Face model directory: `config.json`, `generation_config.json` and the
    /// safetensors weights (single file or sharded), used in place or, with `quantization` (one of
    /// ``GGMLType/onLoad``), quantized on load (``QuantizedWeights``).
    /// - Throws: ``ModelError``; an unsupported architecture names the supported ones.
    package convenience init(
        directory: URL, quantization: GGMLType? = nil, pool: ThreadPool = .shared, instructionSet: InstructionSet = .preferred
    ) throws {
        let config = try ModelConfig(directory: directory)
        let generationConfig = try GenerationConfig(directory: directory)
        let checkpoint = try Checkpoint(directory: directory)
        let weights: any WeightSource = try quantization.map { try QuantizedWeights(checkpoint, type: $0, pool: pool) } ?? checkpoint
        try self.init(config: config, generationConfig: generationConfig, weights: weights, pool: pool, instructionSet: instructionSet)
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
        func vector(_ name: String, _ count: Int, offset: Float = 0) throws -> UnsafePointer<Float> {
            let tensor = try tensor(name)
            guard tensor.shape == [count] else {
                throw ModelError(.invalidTensor, "tensor \(name) has shape \(tensor.shape), expected [\(count)]")
            }
            guard tensor.blockType == nil, [.bf16, .f16, .f32].contains(tensor.dtype) else {
                throw ModelError(.invalidTensor, "tensor \(name) is \(tensor.dtype.rawValue); weights must be BF16, F16 or F32")
            }
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
            for i in 0..<count { buffer[i] = tensor.float(at: i) + offset }
            owned.append(buffer)
            return UnsafePointer(buffer)
        }
        /// An RMSNorm weight, with Gemma's `1 +` folded in (transformers adds it in f32 too).
        func norm(_ name: String, _ count: Int) throws -> UnsafePointer<Float> {
            try vector(name, count, offset: config.normWeightOffset)
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
            finalNorm = try norm("model.norm.weight", hidden)
            layers = try (0..<config.layerCount).map { i in
                let p = "model.layers.\(i)."
                let attentionBias = config.attentionBias
                let mlpBias = config.mlpBias
                let q: WeightMatrix, k: WeightMatrix, v: WeightMatrix
                if config.hasFusedProjections {
                    let qkv = try matrix(p + "self_attn.qkv_proj.weight", qDim + 2 * kvDim, hidden)
                    (q, k, v) = (qkv.rows(0..<qDim), qkv.rows(qDim..<qDim + kvDim), qkv.rows(qDim + kvDim..<qDim + 2 * kvDim))
                } else {
                    q = try matrix(p + "self_attn.q_proj.weight", qDim, hidden)
                    k = try matrix(p + "self_attn.k_proj.weight", kvDim, hidden)
                    v = try matrix(p + "self_attn.v_proj.weight", kvDim, hidden)
                }
                let sandwich = config.hasSandwichNorms
                let window = config.window(layer: i)
                let feedForward: FeedForward
                if let experts = config.experts, experts.sparseLayers.contains(i) {
                    feedForward = .experts(try ExpertFeedForward(layer: i, config: experts, hidden: hidden, matrix: matrix))
                } else {
                    let gate: WeightMatrix, up: WeightMatrix
                    if config.hasFusedProjections {
                        let gateUp = try matrix(p + "mlp.gate_up_proj.weight", 2 * inter, hidden)
                        (gate, up) = (gateUp.rows(0..<inter), gateUp.rows(inter..<2 * inter))
                    } else {
                        gate = try matrix(p + "mlp.gate_proj.weight", inter, hidden)
                        up = try matrix(p + "mlp.up_proj.weight", inter, hidden)
                    }
                    feedForward = .dense(
                        GatedMLP(
                            gate: gate, up: up, down: try matrix(p + "mlp.down_proj.weight", hidden, inter),
                            gateBias: mlpBias ? try vector(p + "mlp.gate_proj.bias", inter) : nil,
                            upBias: mlpBias ? try vector(p + "mlp.up_proj.bias", inter) : nil,
                            downBias: mlpBias ? try vector(p + "mlp.down_proj.bias", hidden) : nil,
                            activation: config.activation
                        ))
                }
                return Layer(
                    inputNorm: try norm(p + "input_layernorm.weight", hidden),
                    q: q, k: k, v: v,
                    o: try matrix(p + "self_attn.o_proj.weight", hidden, qDim),
                    qBias: attentionBias ? try vector(p + "self_attn.q_proj.bias", qDim) : nil,
                    kBias: attentionBias ? try vector(p + "self_attn.k_proj.bias", kvDim) : nil,
                    vBias: attentionBias ? try vector(p + "self_attn.v_proj.bias", kvDim) : nil,
                    // Qwen2's o_proj never has a bias; with `attention_bias` the others' has.
                    oBias: attentionBias && config.architecture != .qwen2 ? try vector(p + "self_attn.o_proj.bias", hidden) : nil,
                    qNorm: config.hasQKNorm ? try norm(p + "self_attn.q_norm.weight", hd) : nil,
                    kNorm: config.hasQKNorm ? try norm(p + "self_attn.k_norm.weight", hd) : nil,
                    postAttentionNorm: sandwich ? try norm(p + "post_attention_layernorm.weight", hidden) : nil,
                    feedForwardNorm: try norm(p + (sandwich ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight"), hidden),
                    postFeedForwardNorm: sandwich ? try norm(p + "post_feedforward_layernorm.weight", hidden) : nil,
                    feedForward: feedForward,
                    window: window,
                    localRope: window != nil && config.localRopeTheta != nil
                )
            }
        } catch {
            owned.forEach { $0.deallocate() }
            throw error
        }
        self.owned = owned
        rope = RotaryEmbedding(config: config)
        localRope = RotaryEmbedding(localLayersOf: config)
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
    /// - Returns: per segment, the rows its ``LogitsSelection`` asks for: logits (`vocabSize` floats each), or
    ///   with `output` ``ForwardOutput/hiddenStates`` the final normed hidden states (`hiddenSize` floats each).
    /// - Throws: ``ModelError`` when a token id is out of range or one cache appears twice.
    package func forward(_ segments: [ForwardSegment], output: ForwardOutput = .logits) throws -> [[[Float]]] {
        let hidden = config.hiddenSize, hd = config.headDim, vocab = config.vocabSize
        let heads = config.headCount, kvHeads = config.kvHeadCount, group = heads / kvHeads
        let qDim = heads * hd, kvDim = kvHeads * hd, inter = config.intermediateSize
        let eps = config.rmsNormEps

        var caches = Set<ObjectIdentifier>()
        for segment in segments {
            guard caches.insert(ObjectIdentifier(segment.cache)).inserted else {
                throw ModelError(.invalidTensor, "one KV cache appears in two segments of the same forward pass")
            }
            for token in segment.tokens where token < 0 || Int(token) >= vocab {
                throw ModelError(.invalidTensor, "token id \(token) is outside the vocabulary of \(vocab)")
            }
        }
        let (segments, refilled) = refillingLongropeCaches(segments)
        var positions: [Int] = []
        var owners: [Int] = []
        for (index, segment) in segments.enumerated() {
            for offset in segment.tokens.indices {
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
        // Gemma 3's blocks write their output here, to be normalised before the residual add.
        let blockOutput: UnsafeMutablePointer<Float>? = config.hasSandwichNorms ? .allocate(capacity: count * hidden) : nil
        let localRotations: UnsafeMutablePointer<Float>? = localRope != nil ? .allocate(capacity: count * hd) : nil
        defer {
            for buffer in [x, normed, q, k, v, attended, gate, up, rotations] { buffer.deallocate() }
            blockOutput?.deallocate()
            localRotations?.deallocate()
        }
        let cacheOf = segments.map(\.cache)
        for t in 0..<count {
            rope.table(position: positions[t], long: cacheOf[owners[t]].rotatesLong, into: rotations + t * hd)
            if let localRope, let localRotations { localRope.table(position: positions[t], into: localRotations + t * hd) }
        }
        let flatTokens = segments.flatMap(\.tokens)
        for t in 0..<count {
            embedding.copyRow(Int(flatTokens[t]), to: x + t * hidden)
        }
        if let embeddingScale = config.embeddingScale {
            for i in 0..<count * hidden { x[i] *= embeddingScale }
        }
        let scale = config.attentionScale

        for (index, layer) in layers.enumerated() {
            let table = layer.localRope ? localRotations! : rotations
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
                rope.apply(q + t * qDim, heads: heads, table: table + t * hd)
                rope.apply(k + t * kvDim, heads: kvHeads, table: table + t * hd)
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
                    // A sliding window attends to the last `window` positions, the token's own included.
                    let first = layer.window.map { max(0, positions[t] + 1 - $0) } ?? 0
                    Attention.attend(
                        query: q + t * qDim + g * group * hd, groupSize: group, headDim: hd,
                        keys: cache.keys[index] + first * kvDim, values: cache.values[index] + first * kvDim, width: kvDim, offset: g * hd,
                        length: positions[t] + 1 - first, scale: scale, scores: scores,
                        output: attended + t * qDim + g * group * hd
                    )
                }
            }
            // The residual connections are folded into the output projections: they add to `x`. With sandwich
            // norms the block's output is normalised first, then added.
            if let postAttentionNorm = layer.postAttentionNorm, let blockOutput {
                matmul(
                    layer.o, x: attended, xStride: qDim, tokens: count, y: blockOutput, yStride: hidden, bias: layer.oBias, pool: pool,
                    instructionSet: instructionSet)
                addNormalized(blockOutput, weight: postAttentionNorm, to: x, tokens: count)
            } else {
                matmul(
                    layer.o, x: attended, xStride: qDim, tokens: count, y: x, yStride: hidden, bias: layer.oBias, accumulate: true,
                    pool: pool, instructionSet: instructionSet)
            }

            for t in 0..<count {
                VectorOps.rmsNorm(x + t * hidden, weight: layer.feedForwardNorm, eps: eps, count: hidden, output: normed + t * hidden)
            }
            switch layer.feedForward {
            case .dense(let mlp):
                if let postFeedForwardNorm = layer.postFeedForwardNorm, let blockOutput {
                    mlp.run(
                        x: normed, xStride: hidden, tokens: count, y: blockOutput, yStride: hidden, accumulate: false, scratch: (gate, up),
                        pool: pool, instructionSet: instructionSet)
                    addNormalized(blockOutput, weight: postFeedForwardNorm, to: x, tokens: count)
                } else {
                    mlp.run(
                        x: normed, xStride: hidden, tokens: count, y: x, yStride: hidden, accumulate: true, scratch: (gate, up), pool: pool,
                        instructionSet: instructionSet)
                }
            case .experts(let experts):
                experts.apply(normed: normed, x: x, hidden: hidden, tokens: count, pool: pool, instructionSet: instructionSet)
            }
        }
        for segment in segments {
            segment.cache.count += segment.tokens.count
            segment.cache.tokens += segment.tokens
        }

        // Only the rows asked for go through the (large) vocabulary projection.
        var selected: [Int] = []
        var start = 0
        for (index, segment) in segments.enumerated() {
            switch segment.logits {
            case .none: break
            case .last: selected.append(start + segment.tokens.count - 1)
            case .all: selected.append(contentsOf: start + refilled[index]..<start + segment.tokens.count)
            }
            start += segment.tokens.count
        }
        guard !selected.isEmpty else { return segments.map { _ in [] } }
        for (row, t) in selected.enumerated() {
            VectorOps.rmsNorm(x + t * hidden, weight: finalNorm, eps: eps, count: hidden, output: normed + row * hidden)
        }
        let width = output == .logits ? vocab : hidden
        let logits = UnsafeMutablePointer<Float>.allocate(capacity: selected.count * width)
        defer { logits.deallocate() }
        if output == .logits {
            matmul(lmHead, x: normed, xStride: hidden, tokens: selected.count, y: logits, yStride: vocab, pool: pool, instructionSet: instructionSet)
            if let cap = config.finalLogitSoftcapping {
                VectorOps.softcap(logits, cap: cap, count: selected.count * vocab)
            }
        } else {
            logits.update(from: normed, count: selected.count * hidden)
        }
        var row = 0
        return zip(segments, refilled).map { segment, refilled in
            let rows: Int
            switch segment.logits {
            case .none: rows = 0
            case .last: rows = 1
            case .all: rows = segment.tokens.count - refilled
            }
            defer { row += rows }
            return (row..<row + rows).map { r in Array(UnsafeBufferPointer(start: logits + r * width, count: width)) }
        }
    }

    /// The segments to run when longrope switches a sequence between its short and long frequencies: transformers
    /// rotates every position of a sequence longer than `original_max_position_embeddings` with the long ones (and
    /// drops its cache when generation crosses that length), so a cache filled with the other set is emptied and its
    /// tokens run again ahead of the segment's own. Returns the segments and, per segment, how many tokens were put back.
    private func refillingLongropeCaches(_ segments: [ForwardSegment]) -> ([ForwardSegment], [Int]) {
        var refilled = [Int](repeating: 0, count: segments.count)
        guard rope.longInverseFrequencies != nil else { return (segments, refilled) }
        var segments = segments
        for (index, segment) in segments.enumerated() {
            let cache = segment.cache
            let long = rope.usesLongFrequencies(length: cache.count + segment.tokens.count)
            if cache.count > 0, long != cache.rotatesLong {
                refilled[index] = cache.count
                segments[index].tokens = cache.tokens + segment.tokens
                cache.truncate(to: 0)
            }
            cache.rotatesLong = long
        }
        return (segments, refilled)
    }

    /// `x += rmsNorm(block)` for `tokens` rows of the hidden size (`block` is normalised in place).
    private func addNormalized(_ block: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>, to x: UnsafeMutablePointer<Float>, tokens: Int) {
        let hidden = config.hiddenSize
        for t in 0..<tokens {
            let row = block + t * hidden
            VectorOps.rmsNorm(row, weight: weight, eps: config.rmsNormEps, count: hidden, output: row)
            for i in 0..<hidden { x[t * hidden + i] += row[i] }
        }
    }
}
