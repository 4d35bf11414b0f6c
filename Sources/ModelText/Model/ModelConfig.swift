import Foundation

/// The decoder architectures the engine implements.
package enum Architecture: String, Sendable, CaseIterable {
    case qwen2 = "Qwen2ForCausalLM"
    case qwen3 = "Qwen3ForCausalLM"
    case llama = "LlamaForCausalLM"
    case mistral = "MistralForCausalLM"
    /// Phi-3 and Phi-3.5: Llama's layer with fused `qkv_proj` and `gate_up_proj` matrices.
    case phi3 = "Phi3ForCausalLM"
    /// Gemma 3's text model: GeGLU, `(1 + w)` RMSNorms around both blocks, q/k norms, a scaled
    /// embedding, and sliding-window layers with their own RoPE base between global ones.
    case gemma3 = "Gemma3ForCausalLM"
    case qwen3Moe = "Qwen3MoeForCausalLM"
}

/// The sparse feed-forward of a mixture-of-experts model (Qwen3-MoE): per token a router picks
/// `expertsPerToken` of `expertCount` experts (gated MLPs of `intermediateSize`) and sums their outputs,
/// weighted by the router's softmax probabilities.
package struct MixtureOfExperts: Sendable, Equatable {
    package var expertCount: Int
    package var expertsPerToken: Int
    /// `moe_intermediate_size`: each expert's MLP width.
    package var intermediateSize: Int
    /// `norm_topk_prob`: the chosen experts' probabilities are divided by their sum.
    package var normalizesTopK: Bool
    /// The layers whose feed-forward is the experts; the others have the dense MLP of the model's
    /// `intermediateSize`.
    package var sparseLayers: Set<Int>

    package init(expertCount: Int, expertsPerToken: Int, intermediateSize: Int, normalizesTopK: Bool, sparseLayers: Set<Int>) {
        self.expertCount = expertCount
        self.expertsPerToken = expertsPerToken
        self.intermediateSize = intermediateSize
        self.normalizesTopK = normalizesTopK
        self.sparseLayers = sparseLayers
    }

    /// transformers' rule: layer `i` is sparse unless listed in `mlp_only_layers`, and when `i + 1` is a
    /// multiple of `decoder_sparse_step`.
    package static func sparseLayers(count: Int, step: Int, mlpOnly: Set<Int>) -> Set<Int> {
        Set((0..<count).filter { !mlpOnly.contains($0) && ($0 + 1) % step == 0 })
    }
}

/// The gated MLP's activation (`hidden_act`, or Gemma's `hidden_activation`).
package enum Activation: String, Sendable, CaseIterable {
    case silu
    /// GELU with the tanh approximation (GeGLU when gated).
    case geluTanh = "gelu_pytorch_tanh"
}

/// Which keys a layer attends to.
package enum LayerAttention: String, Sendable {
    /// Every earlier position.
    case full = "full_attention"
    /// The last ``ModelConfig/slidingWindow`` positions, the token's own included.
    case sliding = "sliding_attention"
}

/// How the rotary frequencies are rescaled for long contexts (`rope_scaling`).
package enum RopeScaling: Sendable, Equatable {
    case llama3(Llama3RopeScaling)
    /// `rope_type: "linear"`: every frequency divided by the factor (position interpolation).
    case linear(factor: Double)
    /// `rope_type: "longrope"` (Phi-3.5, Phi-4-mini; formerly `su`).
    case longrope(LongRopeScaling)
}

/// `rope_scaling` with `rope_type: "longrope"`: each frequency is divided by its own factor, the short ones while
/// a sequence is at most ``originalMaxPositionEmbeddings`` long and the long ones for every position once it is
/// longer (docs/builtin-engine.md, Rotary embeddings); cosines and sines are multiplied by ``attentionFactor``.
package struct LongRopeScaling: Sendable, Equatable {
    /// One divisor per rotated pair (`short_factor`).
    package var shortFactors: [Double]
    /// One divisor per rotated pair (`long_factor`).
    package var longFactors: [Double]
    package var originalMaxPositionEmbeddings: Int
    /// `attention_factor`, or transformers' default `sqrt(1 + ln(factor) / ln(original))` for a `factor`
    /// (`max_position_embeddings / original_max_position_embeddings` unless given) above 1, else 1.
    package var attentionFactor: Double

    package init(shortFactors: [Double], longFactors: [Double], originalMaxPositionEmbeddings: Int, attentionFactor: Double) {
        self.shortFactors = shortFactors
        self.longFactors = longFactors
        self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
        self.attentionFactor = attentionFactor
    }

    /// transformers' default attention factor for a context extended `factor` times beyond `original` positions.
    package static func attentionFactor(factor: Double, original: Int) -> Double {
        factor <= 1 ? 1 : (1 + log(factor) / log(Double(original))).squareRoot()
    }
}

/// `rope_scaling` with `rope_type: "llama3"` (Llama 3.1 and later).
package struct Llama3RopeScaling: Sendable, Equatable {
    package var factor: Double
    package var lowFrequencyFactor: Double
    package var highFrequencyFactor: Double
    package var originalMaxPositionEmbeddings: Double

    package init(factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalMaxPositionEmbeddings: Double) {
        self.factor = factor
        self.lowFrequencyFactor = lowFrequencyFactor
        self.highFrequencyFactor = highFrequencyFactor
        self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
    }
}

/// The parts of `config.json` the forward pass needs, with transformers' defaults per architecture.
package struct ModelConfig: Sendable, Equatable {
    package var architecture: Architecture
    package var hiddenSize: Int
    package var intermediateSize: Int
    package var layerCount: Int
    package var headCount: Int
    package var kvHeadCount: Int
    package var headDim: Int
    /// The leading dimensions of each head that RoPE rotates (`int(head_dim · partial_rotary_factor)`); the rest
    /// pass through unrotated.
    package var rotaryDimensions: Int
    package var vocabSize: Int
    package var rmsNormEps: Float
    package var ropeTheta: Double
    package var ropeScaling: RopeScaling?
    /// Divisors of the rotary frequencies, one per pair (GGUF files of Llama 3.1 and later store the
    /// scaling so); nil for none.
    package var ropeFrequencyFactors: [Float]?
    package var tieWordEmbeddings: Bool
    /// Biases on the q, k and v projections (always for Qwen2, `attention_bias` otherwise).
    package var attentionBias: Bool
    package var mlpBias: Bool
    package var maxPositionEmbeddings: Int
    package var activation: Activation = .silu
    /// Positions a sliding-window layer attends to (its own included), or nil for none.
    package var slidingWindow: Int?
    /// Per layer, full or sliding-window attention; empty when every layer is full.
    package var layerTypes: [LayerAttention] = []
    /// The RoPE base of the sliding-window layers when it differs from ``ropeTheta`` (Gemma 3's
    /// `rope_local_base_freq`; those layers never scale their frequencies).
    package var localRopeTheta: Double?
    /// Gemma 3's `query_pre_attn_scalar`: attention scores are scaled by its inverse square root
    /// rather than by that of `head_dim`.
    package var queryPreAttentionScalar: Double?
    /// `final_logit_softcapping`: logits become `cap · tanh(logits / cap)`.
    package var finalLogitSoftcapping: Float?
    /// The experts of a mixture-of-experts model; nil for a dense one.
    package var experts: MixtureOfExperts?
    /// What RMSNorm weights are offset by: Gemma's norms scale by `1 + weight` in a checkpoint, while llama.cpp's
    /// converter stores `1 + weight` in a GGUF file already.
    package var normWeightOffset: Float

    package init(
        architecture: Architecture, hiddenSize: Int, intermediateSize: Int, layerCount: Int,
        headCount: Int, kvHeadCount: Int, headDim: Int, vocabSize: Int, rmsNormEps: Float,
        ropeTheta: Double, ropeScaling: RopeScaling? = nil, tieWordEmbeddings: Bool,
        attentionBias: Bool, mlpBias: Bool = false, maxPositionEmbeddings: Int, experts: MixtureOfExperts? = nil
    ) {
        self.architecture = architecture
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.layerCount = layerCount
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
        self.rotaryDimensions = headDim
        self.vocabSize = vocabSize
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.tieWordEmbeddings = tieWordEmbeddings
        self.attentionBias = attentionBias
        self.mlpBias = mlpBias
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.experts = experts
        self.normWeightOffset = architecture == .gemma3 ? 1 : 0
    }

    /// Bytes one token occupies in a ``KVCache`` (keys and values of every layer, f16): what a
    /// scheduler budgets memory with.
    package var kvCacheBytesPerToken: Int { 2 * layerCount * kvHeadCount * headDim * MemoryLayout<Float16>.size }

    /// Qwen3, Qwen3-MoE and Gemma 3 normalise each query and key head (`q_norm`, `k_norm`) before RoPE.
    package var hasQKNorm: Bool { [.qwen3, .qwen3Moe, .gemma3].contains(architecture) }

    /// Phi-3 stores q, k and v as one `qkv_proj` matrix and gate and up as one `gate_up_proj`.
    package var hasFusedProjections: Bool { architecture == .phi3 }

    /// Gemma 3 normalises each block's output too (`post_attention_layernorm`, `post_feedforward_layernorm`)
    /// before adding it to the residual stream, and the MLP's input with `pre_feedforward_layernorm`.
    package var hasSandwichNorms: Bool { architecture == .gemma3 }

    /// What the token embeddings are multiplied by (Gemma: the square root of the hidden size, rounded to f32).
    package var embeddingScale: Float? { architecture == .gemma3 ? Float(Double(hiddenSize).squareRoot()) : nil }

    /// The factor attention scores are scaled by.
    package var attentionScale: Float {
        guard let queryPreAttentionScalar else { return 1 / Float(headDim).squareRoot() }
        return Float(1 / queryPreAttentionScalar.squareRoot())
    }

    /// The attention window of `layer`: nil for full attention.
    package func window(layer: Int) -> Int? {
        guard let slidingWindow else { return nil }
        if layerTypes.isEmpty { return slidingWindow }
        return layerTypes[layer] == .sliding ? slidingWindow : nil
    }

    /// Qwen2.5-0.5B's exact shape, for benchmarks on random weights.
    package static let qwen25_0_5B = ModelConfig(
        architecture: .qwen2, hiddenSize: 896, intermediateSize: 4864, layerCount: 24, headCount: 14,
        kvHeadCount: 2, headDim: 64, vocabSize: 151936, rmsNormEps: 1e-6, ropeTheta: 1_000_000,
        tieWordEmbeddings: true, attentionBias: true, maxPositionEmbeddings: 32768
    )

    /// Reads `config.json` from a model directory.
    /// - Throws: ``ModelError`` `unsupportedArchitecture` naming what is supported, or `invalidConfig`.
    package init(directory: URL) throws {
        let url = directory.appendingPathComponent("config.json")
        let data: Data
        do {
            data = try JSONLimits.readFile(url)
        } catch {
            throw ModelError(.unreadableFile, "cannot read \(url.path)", cause: error)
        }
        try self.init(json: data)
    }

    /// Parses the contents of a `config.json`.
    package init(json data: Data) throws {
        let parsed: Any
        do {
            parsed = try JSONLimits.jsonObject(with: data)
        } catch {
            throw ModelError(.invalidConfig, "config.json is not valid JSON", cause: error)
        }
        guard let object = parsed as? [String: Any] else {
            throw ModelError(.invalidConfig, "config.json is not a JSON object")
        }
        let supported = Architecture.allCases.map(\.rawValue).joined(separator: ", ")
        let names = object["architectures"] as? [String] ?? []
        guard let architecture = names.lazy.compactMap(Architecture.init(rawValue:)).first else {
            let found = names.isEmpty ? (object["model_type"] as? String ?? "none") : names.joined(separator: ", ")
            throw ModelError(.unsupportedArchitecture, "architecture \(found) is not supported by the built-in engine; it runs \(supported)")
        }
        func int(_ key: String) throws -> Int {
            if let value = object[key] as? Int { return value }
            if let value = object[key] as? Double, let whole = Int(exactly: value) { return whole }
            throw ModelError(.invalidConfig, "config.json has no integer \(key)")
        }
        func double(_ key: String, default value: Double) -> Double {
            (object[key] as? Double) ?? (object[key] as? Int).map(Double.init) ?? value
        }
        let hidden = try int("hidden_size")
        let heads = try int("num_attention_heads")
        let kvHeads =
            object["num_key_value_heads"] == nil || object["num_key_value_heads"] is NSNull
            ? heads : try int("num_key_value_heads")
        let headDim = object["head_dim"] == nil || object["head_dim"] is NSNull ? (heads > 0 ? hidden / heads : 0) : try int("head_dim")
        guard hidden > 0, heads > 0, kvHeads > 0, heads % kvHeads == 0, headDim > 0, headDim % 2 == 0 else {
            throw ModelError(
                .invalidConfig,
                "config.json has inconsistent attention sizes: hidden \(hidden), heads \(heads), kv heads \(kvHeads), head_dim \(headDim)")
        }
        if object["use_sliding_window"] as? Bool == true {
            throw ModelError(.unsupportedArchitecture, "sliding-window attention (use_sliding_window) is not supported by the built-in engine")
        }
        let activationKey = architecture == .gemma3 && object["hidden_activation"] != nil ? "hidden_activation" : "hidden_act"
        var activation = Activation.silu
        if let name = object[activationKey] as? String {
            guard let known = Activation(rawValue: name), architecture == .gemma3 || known == .silu else {
                let supported = architecture == .gemma3 ? "gelu_pytorch_tanh and silu" : "silu"
                throw ModelError(.unsupportedArchitecture, "\(activationKey) \(name) is not supported by the built-in engine; it runs \(supported)")
            }
            activation = known
        } else if architecture == .gemma3 {
            activation = .geluTanh
        }
        // Hub checkpoints write `rope_theta` and `rope_scaling`; transformers 5 writes both into
        // `rope_parameters` (Gemma 3: one such object per layer type).
        var parameters = object["rope_parameters"] as? [String: Any]
        var localParameters: [String: Any]?
        if let full = parameters?["full_attention"] as? [String: Any] {
            localParameters = parameters?["sliding_attention"] as? [String: Any]
            parameters = full
        }
        func number(_ value: Any?) -> Double? { (value as? Double) ?? (value as? Int).map(Double.init) }
        var theta = double("rope_theta", default: architecture == .gemma3 ? 1_000_000 : 10000)
        if object["rope_theta"] == nil, let value = number(parameters?["rope_theta"]) { theta = value }
        // transformers rotates `int(head_dim · partial_rotary_factor)` dimensions (the factor beside `rope_scaling` or in it).
        let rope = (object["rope_scaling"] as? [String: Any]) ?? parameters
        let partial = number(rope?["partial_rotary_factor"]) ?? number(object["partial_rotary_factor"]) ?? 1
        let rotaryDimensions = Int(Double(headDim) * partial)
        guard partial > 0, partial <= 1, rotaryDimensions > 0, rotaryDimensions % 2 == 0 else {
            throw ModelError(
                .invalidConfig, "config.json has partial_rotary_factor \(partial), which rotates \(rotaryDimensions) of \(headDim) dimensions")
        }
        if partial != 1, architecture == .gemma3 {
            throw ModelError(.unsupportedArchitecture, "partial_rotary_factor \(partial) is not supported by the built-in engine for Gemma 3")
        }
        let maxPositions = (try? int("max_position_embeddings")) ?? 32768
        var scaling: RopeScaling?
        if let rope {
            scaling = try Self.ropeScaling(
                rope, pairs: rotaryDimensions / 2, maxPositionEmbeddings: maxPositions,
                originalMaxPositionEmbeddings: number(object["original_max_position_embeddings"]).flatMap { Int(exactly: $0) })
        }
        let layerCount = try int("num_hidden_layers")
        // Mistral and Phi-3 slide the window over every layer when `sliding_window` is set; Gemma 3 only over
        // its `sliding_attention` layers (`layer_types`, or every layer but each `sliding_window_pattern`-th).
        var slidingWindow: Int?
        var layerTypes: [LayerAttention] = []
        var localTheta: Double?
        if [.mistral, .phi3, .gemma3].contains(architecture), object["sliding_window"] != nil, !(object["sliding_window"] is NSNull) {
            let window = try int("sliding_window")
            guard window > 0 else { throw ModelError(.invalidConfig, "config.json has sliding_window \(window); it must be positive") }
            slidingWindow = window
        }
        if architecture == .gemma3 {
            if object["use_bidirectional_attention"] as? Bool == true {
                throw ModelError(
                    .unsupportedArchitecture, "use_bidirectional_attention is not supported by the built-in engine; it runs causal attention")
            }
            if let names = object["layer_types"] as? [String] {
                layerTypes = try names.map { name in
                    guard let type = LayerAttention(rawValue: name) else {
                        throw ModelError(
                            .unsupportedArchitecture,
                            "layer type \(name) is not supported by the built-in engine; it runs full_attention and sliding_attention")
                    }
                    return type
                }
                guard layerTypes.count == layerCount else {
                    throw ModelError(.invalidConfig, "config.json has \(layerTypes.count) layer_types for \(layerCount) layers")
                }
            } else {
                let pattern = (try? int("sliding_window_pattern")) ?? 6
                guard pattern > 0 else { throw ModelError(.invalidConfig, "config.json has sliding_window_pattern \(pattern)") }
                layerTypes = (0..<layerCount).map { ($0 + 1) % pattern == 0 ? .full : .sliding }
            }
            if let local = localParameters {
                if try Self.ropeScaling(local, pairs: rotaryDimensions / 2, maxPositionEmbeddings: maxPositions) != nil {
                    throw ModelError(.unsupportedArchitecture, "rope scaling on sliding_attention layers is not supported by the built-in engine")
                }
            }
            localTheta = number(object["rope_local_base_freq"]) ?? number(localParameters?["rope_theta"]) ?? 10000
            if layerTypes.contains(.sliding), slidingWindow == nil {
                throw ModelError(.invalidConfig, "config.json has sliding_attention layers but no sliding_window")
            }
        }
        let experts = try architecture == .qwen3Moe ? Self.experts(object, layers: layerCount) : nil
        var config = ModelConfig(
            architecture: architecture,
            hiddenSize: hidden,
            intermediateSize: try int("intermediate_size"),
            layerCount: layerCount,
            headCount: heads,
            kvHeadCount: kvHeads,
            headDim: headDim,
            vocabSize: try int("vocab_size"),
            rmsNormEps: Float(double("rms_norm_eps", default: 1e-6)),
            ropeTheta: theta,
            ropeScaling: scaling,
            // transformers' per-architecture defaults: Gemma 3 ties, every other supported class does not.
            tieWordEmbeddings: object["tie_word_embeddings"] as? Bool ?? (architecture == .gemma3),
            attentionBias: architecture == .qwen2
                ? true : [.llama, .qwen3, .gemma3].contains(architecture) && (object["attention_bias"] as? Bool ?? false),
            mlpBias: architecture == .llama ? (object["mlp_bias"] as? Bool ?? false) : false,
            maxPositionEmbeddings: maxPositions,
            experts: experts
        )
        config.rotaryDimensions = rotaryDimensions
        config.activation = activation
        config.slidingWindow = slidingWindow
        config.layerTypes = layerTypes
        config.localRopeTheta = localTheta
        if architecture == .gemma3 {
            config.queryPreAttentionScalar = number(object["query_pre_attn_scalar"]) ?? 256
            if let cap = number(object["final_logit_softcapping"]) {
                guard cap > 0 else { throw ModelError(.invalidConfig, "config.json has final_logit_softcapping \(cap); it must be positive") }
                config.finalLogitSoftcapping = Float(cap)
            }
            // `attn_logit_softcapping` is read by transformers' Gemma 3 config but not applied by its attention
            // (Gemma 3 checkpoints leave it null): the engine likewise ignores it.
        }
        self = config
    }

    /// The experts of a Qwen3-MoE `config.json`, with transformers' defaults. transformers 5 writes
    /// `num_experts` as `num_local_experts`.
    private static func experts(_ object: [String: Any], layers: Int) throws -> MixtureOfExperts {
        func int(_ key: String, default value: Int) throws -> Int {
            guard let found = object[key], !(found is NSNull) else { return value }
            if let number = found as? Int { return number }
            throw ModelError(.invalidConfig, "config.json has a non-integer \(key)")
        }
        let count = try int("num_experts", default: try int("num_local_experts", default: 128))
        let perToken = try int("num_experts_per_tok", default: 8)
        let width = try int("moe_intermediate_size", default: 768)
        let step = try int("decoder_sparse_step", default: 1)
        var mlpOnly: [Int] = []
        if let value = object["mlp_only_layers"], !(value is NSNull) {
            guard let list = value as? [Int] else {
                throw ModelError(.invalidConfig, "config.json has a mlp_only_layers that is not a list of integers")
            }
            mlpOnly = list
        }
        guard count > 0, perToken > 0, perToken <= count, width > 0, step > 0 else {
            throw ModelError(
                .invalidConfig,
                "config.json has inconsistent experts: num_experts \(count), num_experts_per_tok \(perToken), moe_intermediate_size \(width), decoder_sparse_step \(step)"
            )
        }
        return MixtureOfExperts(
            expertCount: count, expertsPerToken: perToken, intermediateSize: width,
            normalizesTopK: object["norm_topk_prob"] as? Bool ?? false,
            sparseLayers: MixtureOfExperts.sparseLayers(count: layers, step: step, mlpOnly: Set(mlpOnly))
        )
    }

    /// The scaling of a `rope_scaling` (or `rope_parameters`) object; nil for `default`. `pairs` is half the
    /// rotated dimensions (longrope has a factor for each); longrope's `original_max_position_embeddings` is in the
    /// object or, as Phi-3.5 and Phi-4-mini write it, beside it.
    /// - Throws: ``ModelError`` `unsupportedArchitecture` naming a refused type, or `invalidConfig`.
    private static func ropeScaling(
        _ rope: [String: Any], pairs: Int, maxPositionEmbeddings: Int, originalMaxPositionEmbeddings: Int? = nil
    ) throws -> RopeScaling? {
        let type = (rope["rope_type"] as? String) ?? (rope["type"] as? String) ?? "default"
        func number(_ key: String) throws -> Double {
            if let value = rope[key] as? Double { return value }
            if let value = rope[key] as? Int { return Double(value) }
            throw ModelError(.invalidConfig, "rope_scaling of type \(type) has no \(key)")
        }
        switch type {
        case "default":
            return nil
        case "linear":
            let factor = try number("factor")
            guard factor > 0 else { throw ModelError(.invalidConfig, "rope_scaling of type linear has factor \(factor)") }
            return .linear(factor: factor)
        case "llama3":
            return .llama3(
                Llama3RopeScaling(
                    factor: try number("factor"), lowFrequencyFactor: try number("low_freq_factor"),
                    highFrequencyFactor: try number("high_freq_factor"),
                    originalMaxPositionEmbeddings: try number("original_max_position_embeddings")
                ))
        case "longrope", "su":
            func factors(_ key: String) throws -> [Double] {
                let list = (rope[key] as? [Any])?.compactMap { ($0 as? Double) ?? ($0 as? Int).map(Double.init) }
                guard let list, list.count == pairs, list.allSatisfy({ $0 > 0 }) else {
                    throw ModelError(.invalidConfig, "rope_scaling of type \(type) needs \(key) of \(pairs) positive numbers")
                }
                return list
            }
            let original = (try? number("original_max_position_embeddings")).flatMap { Int(exactly: $0) } ?? originalMaxPositionEmbeddings
            guard let original, original > 1 else {
                throw ModelError(.invalidConfig, "rope_scaling of type \(type) needs original_max_position_embeddings above 1")
            }
            let factor = (try? number("factor")) ?? Double(maxPositionEmbeddings) / Double(original)
            let attentionFactor = (try? number("attention_factor")) ?? LongRopeScaling.attentionFactor(factor: factor, original: original)
            return .longrope(
                LongRopeScaling(
                    shortFactors: try factors("short_factor"), longFactors: try factors("long_factor"),
                    originalMaxPositionEmbeddings: original, attentionFactor: attentionFactor))
        default:
            // Others write `yarn` or `dynamic`.
            throw ModelError(
                .unsupportedArchitecture,
                "rope_scaling type \(type) is not supported by the built-in engine; it runs default, linear, llama3 and longrope")
        }
    }
}
