import EngineCompute
import ModelText

/// Generates tokens for one or many sequences with a ``TransformerModel``.
///
/// ``step(_:)`` is the unit of continuous batching: one forward pass that prefills sequences
/// still reading their prompt and decodes one token for each of the others. A server calls it in
/// a loop over its running sequences (adding new ones between steps); ``generate(prompt:parameters:onToken:)``
/// is the single-sequence convenience on top.
package final class Generator: @unchecked Sendable {
    package let model: TransformerModel
    /// End-of-sequence ids from `generation_config.json`.
    package let eosTokenIds: Set<Int32>
    /// Prompt tokens run per step for one sequence; longer prompts take several steps, bounding
    /// activation memory and letting decodes of other sequences proceed in between.
    package var prefillChunk: Int

    package init(model: TransformerModel, prefillChunk: Int = 512) {
        self.model = model
        self.eosTokenIds = Set(model.generationConfig.eosTokenIds)
        self.prefillChunk = max(1, prefillChunk)
    }

    /// A new sequence for `prompt` with an empty cache.
    /// - Throws: ``ModelError`` for an empty prompt, `maxTokens` below 1, an id outside the
    ///   vocabulary, or a prompt that leaves no room in the context.
    package func makeGeneration(prompt: [Int32], parameters: SamplingParameters) throws -> Generation {
        guard !prompt.isEmpty else { throw ModelError(.invalidTensor, "the prompt has no tokens") }
        guard parameters.maxTokens >= 1 else {
            throw ModelError(.invalidTensor, "max_tokens is \(parameters.maxTokens); it must be at least 1")
        }
        let vocab = model.config.vocabSize
        if let bad = prompt.first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw ModelError(.invalidTensor, "prompt token id \(bad) is outside the vocabulary of \(vocab)")
        }
        guard prompt.count < model.config.maxPositionEmbeddings else {
            throw ModelError(.invalidTensor, "the prompt's \(prompt.count) tokens fill the model's context of \(model.config.maxPositionEmbeddings)")
        }
        let capacity = min(prompt.count + min(max(1, parameters.maxTokens), model.config.maxPositionEmbeddings), model.config.maxPositionEmbeddings)
        return Generation(promptTokens: prompt, parameters: parameters, cache: model.makeCache(capacity: capacity))
    }

    /// Advances every unfinished generation by one forward pass.
    /// - Returns: for each generation in order, the token it produced, or nil when it is finished
    ///   or only consumed a chunk of its prompt.
    package func step(_ generations: [Generation]) throws -> [GeneratedToken?] {
        var segments: [ForwardSegment] = []
        var active: [Int] = []
        for (index, generation) in generations.enumerated() where !generation.isFinished {
            let chunk = Array(generation.pending.prefix(prefillChunk))
            let completes = chunk.count == generation.pending.count
            segments.append(ForwardSegment(cache: generation.cache, tokens: chunk, logits: completes ? .last : .none))
            active.append(index)
        }
        var results = [GeneratedToken?](repeating: nil, count: generations.count)
        guard !segments.isEmpty else { return results }
        let logits = try model.forward(segments)
        for (slot, index) in active.enumerated() {
            let generation = generations[index]
            generation.pending.removeFirst(segments[slot].tokens.count)
            guard let row = logits[slot].first else { continue }
            results[index] = sample(generation, logits: row)
        }
        return results
    }

    /// Generates for one prompt until a stop token or `maxTokens`, calling `onToken` for each token.
    /// - Returns: every generated token; the last carries the finish reason.
    @discardableResult
    package func generate(
        prompt: [Int32], parameters: SamplingParameters, onToken: (GeneratedToken) -> Void = { _ in }
    ) throws -> [GeneratedToken] {
        let generation = try makeGeneration(prompt: prompt, parameters: parameters)
        var tokens: [GeneratedToken] = []
        while !generation.isFinished {
            if let token = try step([generation])[0] {
                tokens.append(token)
                onToken(token)
            }
        }
        return tokens
    }

    private func sample(_ generation: Generation, logits: [Float]) -> GeneratedToken {
        let parameters = generation.parameters
        var stops = Set(parameters.stopTokenIds)
        if !parameters.ignoreEOS { stops.formUnion(eosTokenIds) }
        let banned = generation.outputTokens.count < parameters.minTokens ? Array(stops).sorted() : []
        let (id, logprob, top) = generation.sampler.sample(logits, banned: banned)
        generation.sampler.accept(id)
        generation.outputTokens.append(id)
        var token = GeneratedToken(id: id, logprob: logprob, topLogprobs: top)
        if stops.contains(id) {
            token.finishReason = .stop
        } else if generation.outputTokens.count >= parameters.maxTokens
            || generation.cache.count + 1 >= model.config.maxPositionEmbeddings
        {
            token.finishReason = .length
        } else {
            generation.pending = [id]
        }
        generation.finishReason = token.finishReason
        return token
    }
}
