/// Why a sequence stopped, as the OpenAI API reports it.
package enum FinishReason: String, Sendable, Equatable {
    /// An end-of-sequence or stop token was generated.
    case stop
    /// `maxTokens` were generated or the context is full.
    case length
}

/// One generated token with what the API reports about it.
package struct GeneratedToken: Sendable, Equatable {
    package var id: Int32
    /// The token's log-probability under the model's raw distribution, when requested.
    package var logprob: Float?
    /// The most likely tokens at this position, when requested.
    package var topLogprobs: [TokenLogprob]
    /// Set on the sequence's last token. When it is `.stop`, `id` is the stop token itself,
    /// which a server usually does not render.
    package var finishReason: FinishReason?

    package init(id: Int32, logprob: Float? = nil, topLogprobs: [TokenLogprob] = [], finishReason: FinishReason? = nil) {
        self.id = id
        self.logprob = logprob
        self.topLogprobs = topLogprobs
        self.finishReason = finishReason
    }
}
