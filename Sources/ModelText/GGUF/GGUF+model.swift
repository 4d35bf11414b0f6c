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
        "qwen2": .qwen2, "qwen3": .qwen3, "llama": .llama, "qwen3moe": .qwen3Moe,
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
        if let ropeDimensions = value("rope.dimension_count")?.int, ropeDimensions != headDim {
            throw ModelError(
                .unsupportedArchitecture, "\(source) rotates \(ropeDimensions) of \(headDim) head dimensions; the built-in engine rotates all")
        }
        if let scaling = value("rope.scaling.type")?.string, scaling != "none" {
            throw ModelError(.unsupportedArchitecture, "\(source) has rope scaling \(scaling), which the built-in engine does not support")
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
            tieWordEmbeddings: gguf.tensorInfo(named: "output.weight") == nil,
            attentionBias: gguf.tensorInfo(named: "blk.0.attn_q.bias") != nil,
            maxPositionEmbeddings: value("context_length")?.int ?? 32768
        )
        if architecture == .qwen3Moe {
            config.experts = try Self.experts(gguf, layers: config.layerCount)
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
