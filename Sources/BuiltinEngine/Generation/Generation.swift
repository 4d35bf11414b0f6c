import EngineCompute

/// One sequence being generated: its prompt, sampling state, KV cache and output so far.
///
/// Created by ``Generator/makeGeneration(prompt:parameters:)`` and advanced by
/// ``Generator/step(_:)``; a scheduler keeps a list of unfinished generations and steps them
/// together. Not thread-safe: owned by whoever drives the generator.
package final class Generation: @unchecked Sendable {
    package let promptTokens: [Int32]
    package let parameters: SamplingParameters
    package let cache: KVCache
    package internal(set) var outputTokens: [Int32] = []
    package internal(set) var finishReason: FinishReason?
    var sampler: Sampler
    /// Structured output: only tokens that keep the text a valid prefix of the schema's JSON are sampled.
    package var constraint: JSONConstraint?
    /// Tokens not yet run through the model: the prompt (or what is left of it) at first, then
    /// the last sampled token.
    var pending: [Int32]

    init(promptTokens: [Int32], parameters: SamplingParameters, cache: KVCache) {
        self.promptTokens = promptTokens
        self.parameters = parameters
        self.cache = cache
        sampler = Sampler(parameters: parameters, promptTokens: promptTokens)
        pending = promptTokens
    }

    package var isFinished: Bool { finishReason != nil }

    /// Ends the sequence from outside the sampler: a stop string matched in the decoded text, or
    /// the client went away. Later ``Generator/step(_:)`` calls skip it.
    package func finish(_ reason: FinishReason) {
        if finishReason == nil { finishReason = reason }
    }

    /// True while (part of) the prompt still has to be prefilled.
    package var isPrefilling: Bool { outputTokens.isEmpty && !pending.isEmpty }
}
