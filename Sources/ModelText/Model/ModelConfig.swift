import Foundation

/// The decoder architectures the engine implements.
package enum Architecture: String, Sendable, CaseIterable {
    case qwen2 = "Qwen2ForCausalLM"
    case qwen3 = "Qwen3ForCausalLM"
    case llama = "LlamaForCausalLM"
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
    package var vocabSize: Int
    package var rmsNormEps: Float
    package var ropeTheta: Double
    package var ropeScaling: Llama3RopeScaling?
    /// Divisors of the rotary frequencies, one per pair (GGUF files of Llama 3.1 and later store the
    /// scaling so); nil for none.
    package var ropeFrequencyFactors: [Float]?
    package var tieWordEmbeddings: Bool
    /// Biases on the q, k and v projections (always for Qwen2, `attention_bias` otherwise).
    package var attentionBias: Bool
    package var mlpBias: Bool
    package var maxPositionEmbeddings: Int
    /// The experts of a mixture-of-experts model; nil for a dense one.
    package var experts: MixtureOfExperts?

    package init(
        architecture: Architecture, hiddenSize: Int, intermediateSize: Int, layerCount: Int,
        headCount: Int, kvHeadCount: Int, headDim: Int, vocabSize: Int, rmsNormEps: Float,
        ropeTheta: Double, ropeScaling: Llama3RopeScaling? = nil, tieWordEmbeddings: Bool,
        attentionBias: Bool, mlpBias: Bool = false, maxPositionEmbeddings: Int, experts: MixtureOfExperts? = nil
    ) {
        self.architecture = architecture
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.layerCount = layerCount
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
        self.vocabSize = vocabSize
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.tieWordEmbeddings = tieWordEmbeddings
        self.attentionBias = attentionBias
        self.mlpBias = mlpBias
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.experts = experts
    }

    /// Bytes one token occupies in a ``KVCache`` (keys and values of every layer, f16): what a
    /// scheduler budgets memory with.
    package var kvCacheBytesPerToken: Int { 2 * layerCount * kvHeadCount * headDim * MemoryLayout<Float16>.size }

    /// Qwen3 normalises each query and key head (`q_norm`, `k_norm`) before RoPE.
    package var hasQKNorm: Bool { architecture == .qwen3 || architecture == .qwen3Moe }

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
        if let act = object["hidden_act"] as? String, act != "silu" {
            throw ModelError(.unsupportedArchitecture, "activation \(act) is not supported by the built-in engine; it runs silu")
        }
        // Hub checkpoints write `rope_theta` and `rope_scaling`; transformers 5 writes both into
        // `rope_parameters`.
        let parameters = object["rope_parameters"] as? [String: Any]
        var theta = double("rope_theta", default: 10000)
        if object["rope_theta"] == nil, let value = parameters?["rope_theta"] {
            theta = (value as? Double) ?? (value as? Int).map(Double.init) ?? theta
        }
        var scaling: Llama3RopeScaling?
        if let rope = (object["rope_scaling"] as? [String: Any]) ?? parameters {
            let type = (rope["rope_type"] as? String) ?? (rope["type"] as? String) ?? "default"
            switch type {
            case "default":
                break
            case "llama3":
                func number(_ key: String) throws -> Double {
                    if let value = rope[key] as? Double { return value }
                    if let value = rope[key] as? Int { return Double(value) }
                    throw ModelError(.invalidConfig, "rope_scaling of type llama3 has no \(key)")
                }
                scaling = Llama3RopeScaling(
                    factor: try number("factor"), lowFrequencyFactor: try number("low_freq_factor"),
                    highFrequencyFactor: try number("high_freq_factor"),
                    originalMaxPositionEmbeddings: try number("original_max_position_embeddings")
                )
            default:
                throw ModelError(
                    .unsupportedArchitecture, "rope_scaling type \(type) is not supported by the built-in engine; it runs default and llama3")
            }
        }
        let layers = try int("num_hidden_layers")
        let experts = try architecture == .qwen3Moe ? Self.experts(object, layers: layers) : nil
        self.init(
            architecture: architecture,
            hiddenSize: hidden,
            intermediateSize: try int("intermediate_size"),
            layerCount: layers,
            headCount: heads,
            kvHeadCount: kvHeads,
            headDim: headDim,
            vocabSize: try int("vocab_size"),
            rmsNormEps: Float(double("rms_norm_eps", default: 1e-6)),
            ropeTheta: theta,
            ropeScaling: scaling,
            // transformers' per-architecture defaults: every supported config class defaults to false.
            tieWordEmbeddings: object["tie_word_embeddings"] as? Bool ?? false,
            attentionBias: architecture == .qwen2 ? true : (object["attention_bias"] as? Bool ?? false),
            mlpBias: architecture == .llama ? (object["mlp_bias"] as? Bool ?? false) : false,
            maxPositionEmbeddings: (try? int("max_position_embeddings")) ?? 32768,
            experts: experts
        )
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
}
