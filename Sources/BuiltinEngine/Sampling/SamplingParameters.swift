import ModelText

/// How one request picks its tokens and when it stops (the OpenAI/vLLM request fields).
package struct SamplingParameters: Sendable, Equatable {
    /// 0 means greedy (argmax after penalties).
    package var temperature: Float
    /// Keep the `topK` most likely tokens; 0 or less disables.
    package var topK: Int
    /// Nucleus sampling as transformers does it; 1 disables.
    package var topP: Float
    /// Drop tokens whose probability is below `minP × p_max`; 0 disables.
    package var minP: Float
    /// transformers' repetition penalty over prompt and output tokens; 1 disables.
    package var repetitionPenalty: Float
    /// OpenAI presence penalty over output tokens: `logit -= presence` once a token appeared.
    package var presencePenalty: Float
    /// OpenAI frequency penalty over output tokens: `logit -= frequency × count`.
    package var frequencyPenalty: Float
    /// Seeds the request's own generator; nil draws a seed from the system.
    package var seed: UInt64?
    /// Tokens to generate at most (finish reason `length`).
    package var maxTokens: Int
    /// Stop tokens are masked until this many tokens were generated.
    package var minTokens: Int
    /// Keep generating past end-of-sequence tokens (benchmarks).
    package var ignoreEOS: Bool
    /// Extra token ids that stop generation like end-of-sequence.
    package var stopTokenIds: [Int32]
    /// Return the chosen token's log-probability.
    package var logprobs: Bool
    /// Also return this many most likely alternatives with their log-probabilities.
    package var topLogprobs: Int

    package init(
        temperature: Float = 1, topK: Int = 0, topP: Float = 1, minP: Float = 0, repetitionPenalty: Float = 1,
        presencePenalty: Float = 0, frequencyPenalty: Float = 0, seed: UInt64? = nil, maxTokens: Int = 256,
        minTokens: Int = 0, ignoreEOS: Bool = false, stopTokenIds: [Int32] = [], logprobs: Bool = false,
        topLogprobs: Int = 0
    ) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.seed = seed
        self.maxTokens = maxTokens
        self.minTokens = minTokens
        self.ignoreEOS = ignoreEOS
        self.stopTokenIds = stopTokenIds
        self.logprobs = logprobs
        self.topLogprobs = topLogprobs
    }

    /// Greedy decoding: temperature 0, no filtering, no penalties.
    package static func greedy(maxTokens: Int) -> SamplingParameters {
        SamplingParameters(temperature: 0, maxTokens: maxTokens)
    }

    /// The model's recommended defaults from `generation_config.json`; a request overrides fields it sets.
    package init(defaults config: GenerationConfig, maxTokens: Int = 256) {
        self.init(maxTokens: maxTokens)
        if config.doSample == false {
            temperature = 0
        } else {
            temperature = config.temperature ?? 1
            topK = config.topK ?? 0
            topP = config.topP ?? 1
            minP = config.minP ?? 0
        }
        repetitionPenalty = config.repetitionPenalty ?? 1
    }
}
