import Foundation

extension URL {
    /// Whether this names a GGUF model file (by its extension) rather than a model directory.
    package var isGGUF: Bool { pathExtension.lowercased() == "gguf" }
}

extension GGUFFile {
    /// `general.architecture`, the prefix of the model's own keys.
    package var architectureName: String { metadata["general.architecture"]?.string ?? "none" }

    /// The token text of the id stored under `key` (such as `tokenizer.ggml.eos_token_id`), or nil.
    package func tokenText(idKey key: String) -> String? {
        guard let id = metadata[key]?.int, let tokens = metadata["tokenizer.ggml.tokens"]?.array, id >= 0, id < tokens.count else {
            return nil
        }
        return tokens[id].string
    }
}

extension ModelConfig {
    /// The `general.architecture` names of the supported architectures.
    package static let ggufArchitectures: [String: Architecture] = [
        "qwen2": .qwen2, "qwen3": .qwen3, "llama": .llama, "qwen3moe": .qwen3Moe, "phi3": .phi3, "gemma3": .gemma3,
    ]

    /// The configuration of a GGUF model, from its `<arch>.*` keys and tensor shapes (docs/design/gguf.md,
    /// Model configuration).
    /// - Throws: ``ModelError`` `unsupportedArchitecture` naming the architecture or option, or `invalidConfig`.
    package init(gguf: GGUFFile) throws {
        let source = gguf.url.lastPathComponent
        let name = gguf.architectureName
        guard let architecture = Self.ggufArchitectures[name] else {
            let supported = Self.ggufArchitectures.keys.sorted().joined(separator: ", ")
            throw ModelError(
                .unsupportedArchitecture, "\(source) has architecture \(name), which the built-in engine does not support; it runs \(supported)")
        }
        func value(_ key: String) -> GGUFValue? { gguf.metadata["\(name).\(key)"] }
        func int(_ key: String) throws -> Int {
            guard let value = value(key)?.int else { throw ModelError(.invalidConfig, "\(source) has no integer \(name).\(key)") }
            return value
        }
        let hidden = try int("embedding_length")
        let heads = try int("attention.head_count")
        let kvHeads = value("attention.head_count_kv") == nil ? heads : try int("attention.head_count_kv")
        let headDim = value("attention.key_length") == nil ? (heads > 0 ? hidden / heads : 0) : try int("attention.key_length")
        if let valueLength = value("attention.value_length")?.int, valueLength != headDim {
            throw ModelError(
                .unsupportedArchitecture, "\(source) has key length \(headDim) and value length \(valueLength); the built-in engine needs them equal")
        }
        guard hidden > 0, heads > 0, kvHeads > 0, heads % kvHeads == 0, headDim > 0, headDim % 2 == 0 else {
            throw ModelError(
                .invalidConfig,
                "\(source) has inconsistent attention sizes: hidden \(hidden), heads \(heads), kv heads \(kvHeads), head dim \(headDim)")
        }
        let rotaryDimensions = value("rope.dimension_count")?.int ?? headDim
        guard rotaryDimensions > 0, rotaryDimensions <= headDim, rotaryDimensions % 2 == 0 else {
            throw ModelError(.invalidConfig, "\(source) rotates \(rotaryDimensions) of \(headDim) head dimensions")
        }
        if rotaryDimensions != headDim, architecture != .phi3 {
            throw ModelError(
                .unsupportedArchitecture,
                "\(source) rotates \(rotaryDimensions) of \(headDim) head dimensions; the built-in engine rotates part of a head for phi3 only")
        }
        var scaling: RopeScaling?
        switch value("rope.scaling.type")?.string ?? "none" {
        case "none": break
        case "linear":
            guard let factor = value("rope.scaling.factor")?.double, factor > 0 else {
                throw ModelError(.invalidConfig, "\(source) has linear rope scaling without a positive \(name).rope.scaling.factor")
            }
            scaling = .linear(factor: factor)
        case let type:
            throw ModelError(
                .unsupportedArchitecture, "\(source) has rope scaling \(type), which the built-in engine does not support; it runs none and linear")
        }
        let embedding = gguf.tensorInfo(named: "token_embd.weight")
        let tokens = gguf.metadata["tokenizer.ggml.tokens"]?.array?.count
        guard let vocab = value("vocab_size")?.int ?? embedding.map({ $0.shape[0] }) ?? tokens, vocab > 0 else {
            throw ModelError(.invalidConfig, "\(source) has no vocabulary size")
        }
        var config = ModelConfig(
            architecture: architecture,
            hiddenSize: hidden,
            intermediateSize: try int("feed_forward_length"),
            layerCount: try int("block_count"),
            headCount: heads,
            kvHeadCount: kvHeads,
            headDim: headDim,
            vocabSize: vocab,
            rmsNormEps: Float(value("attention.layer_norm_rms_epsilon")?.double ?? 1e-6),
            ropeTheta: value("rope.freq_base")?.double ?? 10000,
            ropeScaling: scaling,
            tieWordEmbeddings: gguf.tensorInfo(named: "output.weight") == nil,
            attentionBias: gguf.tensorInfo(named: "blk.0.attn_q.bias") != nil,
            maxPositionEmbeddings: value("context_length")?.int ?? 32768
        )
        config.rotaryDimensions = rotaryDimensions
        // llama.cpp's converter writes Gemma's norm weights with the `1 +` added.
        config.normWeightOffset = 0
        switch architecture {
        case .qwen3Moe: config.experts = try Self.experts(gguf, layers: config.layerCount)
        case .phi3: try Self.readPhi3(gguf, into: &config)
        case .gemma3: try Self.readGemma3(gguf, into: &config)
        default: break
        }
        // Llama 3.1-style scaling arrives as per-frequency divisors (`rope_freqs.weight`), not as keys.
        if let factors = gguf.tensorInfo(named: "rope_freqs.weight") {
            guard factors.type == .f32, factors.dimensions == [headDim / 2] else {
                throw ModelError(
                    .invalidTensor, "\(source): rope_freqs.weight is \(factors.type) \(factors.dimensions), expected F32 [\(headDim / 2)]")
            }
            let data = gguf.data(of: factors)
            config.ropeFrequencyFactors = (0..<headDim / 2).map { data.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
        }
        self = config
    }

    /// A `phi3` file's sliding window (`attention.sliding_window`, 0 for none: it then covers every layer, as
    /// transformers' `sliding_window` does) and longrope: the converter writes no scaling type but the tensors
    /// `rope_factors_short` and `rope_factors_long` (one divisor per rotated pair), `rope.scaling.original_context_length`
    /// and the attention factor it derived, `rope.scaling.attn_factor` (docs/builtin-engine.md, Rotary embeddings).
    private static func readPhi3(_ gguf: GGUFFile, into config: inout ModelConfig) throws {
        let source = gguf.url.lastPathComponent, name = gguf.architectureName
        if let window = gguf.metadata["\(name).attention.sliding_window"]?.int, window > 0 { config.slidingWindow = window }
        let short = gguf.tensorInfo(named: "rope_factors_short.weight"), long = gguf.tensorInfo(named: "rope_factors_long.weight")
        guard short != nil || long != nil else { return }
        let pairs = config.rotaryDimensions / 2
        func factors(_ info: GGUFFile.TensorInfo?, _ tensor: String) throws -> [Double] {
            guard let info, info.type == .f32, info.dimensions == [pairs] else {
                throw ModelError(.invalidTensor, "\(source): \(tensor) is missing or not F32 [\(pairs)], as longrope needs")
            }
            let data = gguf.data(of: info)
            return (0..<pairs).map { Double(data.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self)) }
        }
        guard let original = gguf.metadata["\(name).rope.scaling.original_context_length"]?.int, original > 1 else {
            throw ModelError(.invalidConfig, "\(source) has longrope factors but no \(name).rope.scaling.original_context_length")
        }
        let derived = LongRopeScaling.attentionFactor(factor: Double(config.maxPositionEmbeddings) / Double(original), original: original)
        config.ropeScaling = .longrope(
            LongRopeScaling(
                shortFactors: try factors(short, "rope_factors_short.weight"), longFactors: try factors(long, "rope_factors_long.weight"),
                originalMaxPositionEmbeddings: original,
                attentionFactor: gguf.metadata["\(name).rope.scaling.attn_factor"]?.double ?? derived))
    }

    /// A `gemma3` file as llama.cpp reads it: sliding-window layers when `attention.sliding_window` is positive, chosen
    /// by `attention.sliding_window_pattern` (per-layer booleans, or every n-th layer global; 6 when absent), with the
    /// RoPE base `rope.freq_base_swa` (transformers' 10000 when absent); soft-capped logits by `final_logit_softcapping`;
    /// GeGLU. The converter keeps no `query_pre_attn_scalar`: llama.cpp scales scores by `1/sqrt(head_dim)`, or for the
    /// 62-layer model (27B) by `1/sqrt(hidden / heads)`, which are the values Gemma 3's checkpoints set.
    private static func readGemma3(_ gguf: GGUFFile, into config: inout ModelConfig) throws {
        let source = gguf.url.lastPathComponent, name = gguf.architectureName
        func value(_ key: String) -> GGUFValue? { gguf.metadata["\(name).\(key)"] }
        config.activation = .geluTanh
        config.queryPreAttentionScalar = Double(config.layerCount == 62 ? config.hiddenSize / config.headCount : config.headDim)
        if let cap = value("final_logit_softcapping")?.double {
            guard cap > 0 else { throw ModelError(.invalidConfig, "\(source) has final_logit_softcapping \(cap); it must be positive") }
            config.finalLogitSoftcapping = Float(cap)
        }
        guard let window = value("attention.sliding_window")?.int, window > 0 else { return }
        config.slidingWindow = window
        let layers = config.layerCount
        if let flags = value("attention.sliding_window_pattern")?.array {
            guard flags.count == layers, flags.allSatisfy({ $0.bool != nil }) else {
                throw ModelError(.invalidConfig, "\(source) has a sliding_window_pattern of \(flags.count) values for \(layers) layers")
            }
            config.layerTypes = flags.map { $0.bool == true ? .sliding : .full }
        } else {
            let pattern = value("attention.sliding_window_pattern")?.int ?? 6
            guard pattern > 0 else { throw ModelError(.invalidConfig, "\(source) has sliding_window_pattern \(pattern)") }
            config.layerTypes = (0..<layers).map { ($0 + 1) % pattern == 0 ? .full : .sliding }
        }
        config.localRopeTheta = value("rope.freq_base_swa")?.double ?? 10000
    }

    /// The experts of a `qwen3moe` file: `expert_count`, `expert_used_count`, `expert_feed_forward_length`;
    /// llama.cpp normalises the chosen experts' weights unless `expert_weights_norm` says otherwise. A layer
    /// is sparse when it has a router (`blk.N.ffn_gate_inp.weight`).
    private static func experts(_ gguf: GGUFFile, layers: Int) throws -> MixtureOfExperts {
        let source = gguf.url.lastPathComponent, name = gguf.architectureName
        func int(_ key: String) throws -> Int {
            guard let value = gguf.metadata["\(name).\(key)"]?.int else {
                throw ModelError(.invalidConfig, "\(source) has no integer \(name).\(key)")
            }
            return value
        }
        let count = try int("expert_count"), perToken = try int("expert_used_count"), width = try int("expert_feed_forward_length")
        guard count > 0, perToken > 0, perToken <= count, width > 0 else {
            throw ModelError(.invalidConfig, "\(source) has inconsistent experts: \(count) experts, \(perToken) used, width \(width)")
        }
        return MixtureOfExperts(
            expertCount: count, expertsPerToken: perToken, intermediateSize: width,
            normalizesTopK: gguf.metadata["\(name).expert_weights_norm"]?.bool ?? true,
            sparseLayers: Set((0..<layers).filter { gguf.tensorInfo(named: "blk.\($0).ffn_gate_inp.weight") != nil })
        )
    }
}

extension GenerationConfig {
    /// Control tokens that end a turn in the supported model families; llama.cpp treats them as stop tokens too
    /// (docs/design/gguf.md, Tokenizer).
    package static let endOfTurnTokens: Set<String> = ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"]

    /// Stop and start ids of a GGUF model: `tokenizer.ggml.eos_token_id`, `eot_token_id` and `eom_token_id`,
    /// plus the control tokens of ``endOfTurnTokens``; sampling defaults from `general.sampling.*` (the converter
    /// copies them from `generation_config.json`).
    package init(gguf: GGUFFile) {
        var stops: [Int32] = []
        for key in ["eos", "eot", "eom"] {
            if let id = gguf.metadata["tokenizer.ggml.\(key)_token_id"]?.int, let id32 = Int32(exactly: id), !stops.contains(id32) {
                stops.append(id32)
            }
        }
        let tokens = gguf.metadata["tokenizer.ggml.tokens"]?.array ?? []
        let types = gguf.metadata["tokenizer.ggml.token_type"]?.array ?? []
        for (id, (token, type)) in zip(tokens, types).enumerated()
        where type.int == GGUFTokenType.control && Self.endOfTurnTokens.contains(token.string ?? "") {
            if let id32 = Int32(exactly: id), !stops.contains(id32) { stops.append(id32) }
        }
        func float(_ key: String) -> Float? { gguf.metadata["general.sampling.\(key)"]?.double.map(Float.init) }
        self.init(
            eosTokenIds: stops, bosTokenId: gguf.metadata["tokenizer.ggml.bos_token_id"]?.int.flatMap { Int32(exactly: $0) },
            temperature: float("temp"), topP: float("top_p"), topK: gguf.metadata["general.sampling.top_k"]?.int, minP: float("min_p"),
            repetitionPenalty: float("penalty_repeat")
        )
    }
}

extension ChatTemplate {
    /// The template in `tokenizer.chat_template`, with the BOS and EOS token texts.
    /// - Throws: ``TemplateError`` `.missingTemplate` when the file has none, or a parse error.
    package init(gguf: GGUFFile) throws {
        guard let source = gguf.metadata["tokenizer.chat_template"]?.string else {
            throw TemplateError(.missingTemplate, "\(gguf.url.lastPathComponent) has no tokenizer.chat_template: the model cannot chat")
        }
        try self.init(
            source: source, bosToken: gguf.tokenText(idKey: "tokenizer.ggml.bos_token_id"),
            eosToken: gguf.tokenText(idKey: "tokenizer.ggml.eos_token_id")
        )
    }
}
