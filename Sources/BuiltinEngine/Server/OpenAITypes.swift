import Foundation

/// Sampling fields shared by `/v1/chat/completions` and `/v1/completions` (OpenAI's plus vLLM's extras).
struct SamplingFields: Decodable {
    var model: String?
    var stream: Bool?
    var maxTokens: Int?
    var maxCompletionTokens: Int?
    var temperature: Double?
    var topP: Double?
    var topK: Int?
    var minP: Double?
    var repetitionPenalty: Double?
    var presencePenalty: Double?
    var frequencyPenalty: Double?
    var seed: Int?
    var stop: StopField?
    var stopTokenIds: [Int]?
    var n: Int?
    var logprobs: LogprobsField?
    var topLogprobs: Int?
    var ignoreEOS: Bool?
    var minTokens: Int?
    var streamOptions: StreamOptions?

    struct StreamOptions: Decodable {
        var includeUsage: Bool?
        enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
    }

    enum CodingKeys: String, CodingKey {
        case model, stream, temperature, seed, stop, n, logprobs
        case maxTokens = "max_tokens"
        case maxCompletionTokens = "max_completion_tokens"
        case topP = "top_p"
        case topK = "top_k"
        case minP = "min_p"
        case repetitionPenalty = "repetition_penalty"
        case presencePenalty = "presence_penalty"
        case frequencyPenalty = "frequency_penalty"
        case stopTokenIds = "stop_token_ids"
        case topLogprobs = "top_logprobs"
        case ignoreEOS = "ignore_eos"
        case minTokens = "min_tokens"
        case streamOptions = "stream_options"
    }

    var stopStrings: [String] { stop?.values ?? [] }
}

/// `stop`: a string or a list of strings.
struct StopField: Decodable {
    var values: [String]
    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let one = try? container.decode(String.self) {
            values = [one]
        } else {
            values = try container.decode([String].self)
        }
    }
}

/// `logprobs`: a boolean for chat, an integer (the top count) for completions.
struct LogprobsField: Decodable {
    var enabled: Bool
    var count: Int?
    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let flag = try? container.decode(Bool.self) {
            enabled = flag
        } else {
            count = try container.decode(Int.self)
            enabled = true
        }
    }
}

/// `prompt` of `/v1/completions`: text, or token ids.
struct PromptField: Decodable {
    var text: String?
    var tokens: [Int]?
    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
            self.text = text
        } else if let tokens = try? container.decode([Int].self) {
            self.tokens = tokens
        } else if let texts = try? container.decode([String].self), texts.count == 1 {
            text = texts[0]
        } else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "prompt must be a string or a list of token ids")
        }
    }
}

struct CompletionFields: Decodable {
    var prompt: PromptField
}

/// Usage counts, as OpenAI reports them.
struct Usage: Encodable {
    var promptTokens: Int
    var completionTokens: Int
    var totalTokens: Int { promptTokens + completionTokens }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case totalTokens = "total_tokens"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(promptTokens, forKey: .promptTokens)
        try container.encode(completionTokens, forKey: .completionTokens)
        try container.encode(totalTokens, forKey: .totalTokens)
    }
}

/// One token's log probability in a chat response.
struct ChatLogprob: Encodable {
    struct Top: Encodable {
        var token: String
        var logprob: Float
        var bytes: [UInt8]
    }
    var token: String
    var logprob: Float
    var bytes: [UInt8]
    var topLogprobs: [Top]

    enum CodingKeys: String, CodingKey {
        case token, logprob, bytes
        case topLogprobs = "top_logprobs"
    }
}
