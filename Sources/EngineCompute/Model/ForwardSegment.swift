/// Which positions of a segment a forward pass returns logits for.
package enum LogitsSelection: Sendable {
    /// None: the tokens only fill the cache (a prompt chunk that is not the last).
    case none
    /// The last token's: what sampling the next token needs.
    case last
    /// Every token's: for scoring a prompt or comparing with a reference.
    case all
}

/// What a forward pass returns for the rows a segment's ``LogitsSelection`` picks.
package enum ForwardOutput: Sendable {
    /// The vocabulary's logits: what sampling needs.
    case logits
    /// The hidden states after the final norm (transformers' `last_hidden_state`): what embeddings pool.
    case hiddenStates
}

/// One sequence's share of a batched forward pass: `tokens` are appended to `cache` at positions
/// `cache.count...`. A prompt being prefilled is one segment of many tokens; a sequence being
/// decoded is one segment of one token. A pass may mix both.
package struct ForwardSegment: @unchecked Sendable {
    package var cache: KVCache
    package var tokens: [Int32]
    package var logits: LogitsSelection

    package init(cache: KVCache, tokens: [Int32], logits: LogitsSelection = .last) {
        self.cache = cache
        self.tokens = tokens
        self.logits = logits
    }
}
