import FoundationEssentials

// The request and reply shapes of the earlier services' routes that modeld accepts (docs/older-api.md).

/// `POST /generate`: several prompts completed with the same sampling parameters (vLLM's names).
package struct OlderGenerateRequest: Codable, Sendable {
    package var prompts: [String]
    /// `max_tokens`, `temperature`, `top_p`, `top_k`, `seed`, `stop`, `ignore_eos`, ...: sent to the engine as given.
    package var samplingParams: JSONValue?
    /// The model; default: the `default_model` setting, else the one ready run.
    package var model: String?

    package init(prompts: [String], samplingParams: JSONValue? = nil, model: String? = nil) {
        self.prompts = prompts
        self.samplingParams = samplingParams
        self.model = model
    }

    enum CodingKeys: String, CodingKey {
        case prompts, model
        case samplingParams = "sampling_params"
    }
}

/// One completion of `POST /generate`, in the order of the prompts.
package struct OlderCompletion: Codable, Sendable {
    package var index: Int
    package var text: String
    package var finishReason: String?
    package var usage: LLMUsage?

    package init(index: Int, text: String, finishReason: String?, usage: LLMUsage?) {
        self.index = index
        self.text = text
        self.finishReason = finishReason
        self.usage = usage
    }

    enum CodingKeys: String, CodingKey {
        case index, text, usage
        case finishReason = "finish_reason"
    }
}

/// `POST /api/count-tokens`.
package struct OlderCountTokensRequest: Codable, Sendable {
    package var text: String
    /// The model; default: the `default_model` setting, else the one ready run.
    package var model: String?

    package init(text: String, model: String? = nil) {
        self.text = text
        self.model = model
    }
}

/// `POST /api/generate` without `model` (with it, the body is Ollama's): a prompt answered through the chat
/// template of the `default_model` (else the one ready run).
package struct OlderPromptRequest: Codable, Sendable {
    package var prompt: String
    /// Server-sent events `data: {"delta": ...}` then `data: [DONE]`; false (the default) answers one envelope.
    package var stream: Bool?

    package init(prompt: String, stream: Bool? = nil) {
        self.prompt = prompt
        self.stream = stream
    }
}
