import FoundationEssentials
import Glibc

// The LLM API (`/api/v1/llm/*`), inference in the management envelope: requests name their run by `run_id` (a run id or name) or by
// `model` (routed like the OpenAI gateway, with on-demand start). Fields these types do not list are passed
// to the engine untouched (`ignore_eos`, `top_k`, ...); the daemon reads the raw body for those.

/// `POST /api/v1/llm/generate`: a raw completion of `prompt`.
package struct LLMGenerateRequest: Decodable, Sendable {
    package var runID: String?
    package var model: String?
    package var prompt: String
    package var maxTokens: Int?
    package var temperature: Double?
    package var topP: Double?
    package var stop: StopSequences?
    package var seed: Int?
    /// NDJSON events (``LLMStreamEvent``) instead of one envelope.
    package var stream: Bool?

    enum CodingKeys: String, CodingKey {
        case model, prompt, temperature, stop, seed, stream
        case runID = "run_id"
        case maxTokens = "max_tokens"
        case topP = "top_p"
    }
}

/// `POST /api/v1/llm/chat`: the next assistant message of a conversation, rendered by the model's chat template.
package struct LLMChatRequest: Decodable, Sendable {
    package var runID: String?
    package var model: String?
    package var messages: [LLMMessage]
    package var maxTokens: Int?
    package var temperature: Double?
    package var topP: Double?
    package var stop: StopSequences?
    package var seed: Int?
    package var stream: Bool?

    enum CodingKeys: String, CodingKey {
        case model, messages, temperature, stop, seed, stream
        case runID = "run_id"
        case maxTokens = "max_tokens"
        case topP = "top_p"
    }
}

/// `POST /api/v1/llm/structured-generate`: output constrained by the engine to a JSON schema. `prompt` is a
/// shortcut for one user message; give it or `messages`.
package struct LLMStructuredRequest: Decodable, Sendable {
    package var runID: String?
    package var model: String?
    package var prompt: String?
    package var messages: [LLMMessage]?
    /// A JSON Schema object, passed to the engine as it was sent (key order kept).
    package var schema: JSONValue
    /// The schema's name in OpenAI's `response_format.json_schema.name` (default `output`).
    package var schemaName: String?
    package var maxTokens: Int?
    package var temperature: Double?
    package var topP: Double?
    package var seed: Int?

    enum CodingKeys: String, CodingKey {
        case model, prompt, messages, schema, temperature, seed
        case runID = "run_id"
        case schemaName = "schema_name"
        case maxTokens = "max_tokens"
        case topP = "top_p"
    }
}

/// `POST /api/v1/llm/count-tokens`: `text` as is, or `messages` rendered by the chat template.
package struct TokenCountRequest: Decodable, Sendable {
    package var runID: String?
    package var model: String?
    package var text: String?
    package var messages: [LLMMessage]?
    /// With `messages`: end with the assistant header, as a chat request does (default true).
    package var addGenerationPrompt: Bool?

    enum CodingKeys: String, CodingKey {
        case model, text, messages
        case runID = "run_id"
        case addGenerationPrompt = "add_generation_prompt"
    }
}

/// One message of a conversation.
package struct LLMMessage: Codable, Sendable, Equatable {
    /// `system`, `user`, `assistant` (or `tool`).
    package var role: String
    package var content: String

    package init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// `stop`: one string or a list of strings on the wire.
package struct StopSequences: Decodable, Sendable, Equatable {
    package var values: [String]

    package init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let one = try? container.decode(String.self) {
            values = [one]
        } else {
            values = try container.decode([String].self)
        }
    }
}

/// Token counts of one request, as the engine reported them.
package struct LLMUsage: Codable, Sendable, Equatable {
    package var promptTokens: Int
    package var completionTokens: Int
    package var totalTokens: Int

    package init(promptTokens: Int, completionTokens: Int, totalTokens: Int? = nil) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.totalTokens = totalTokens ?? promptTokens + completionTokens
    }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case totalTokens = "total_tokens"
    }
}

/// The reply to `generate`.
package struct LLMGeneration: Codable, Sendable {
    package var runID: String
    /// The model the run serves, as it was started.
    package var model: String
    package var text: String
    /// `stop` or `length` (nil if the engine did not say).
    package var finishReason: String?
    package var usage: LLMUsage?

    package init(runID: String, model: String, text: String, finishReason: String?, usage: LLMUsage?) {
        self.runID = runID
        self.model = model
        self.text = text
        self.finishReason = finishReason
        self.usage = usage
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(runID, forKey: .runID)
        try container.encode(model, forKey: .model)
        try container.encode(text, forKey: .text)
        try container.encode(finishReason, forKey: .finishReason)
        try container.encode(usage, forKey: .usage)
    }

    enum CodingKeys: String, CodingKey {
        case model, text, usage
        case runID = "run_id"
        case finishReason = "finish_reason"
    }
}

/// The reply to `chat`.
package struct LLMChatReply: Codable, Sendable {
    package var runID: String
    package var model: String
    package var message: LLMMessage
    package var finishReason: String?
    package var usage: LLMUsage?

    package init(runID: String, model: String, message: LLMMessage, finishReason: String?, usage: LLMUsage?) {
        self.runID = runID
        self.model = model
        self.message = message
        self.finishReason = finishReason
        self.usage = usage
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(runID, forKey: .runID)
        try container.encode(model, forKey: .model)
        try container.encode(message, forKey: .message)
        try container.encode(finishReason, forKey: .finishReason)
        try container.encode(usage, forKey: .usage)
    }

    enum CodingKeys: String, CodingKey {
        case model, message, usage
        case runID = "run_id"
        case finishReason = "finish_reason"
    }
}

/// The reply to `structured-generate`: the engine's text, and that text parsed.
package struct LLMStructuredReply: Codable, Sendable {
    package var runID: String
    package var model: String
    package var text: String
    /// `text` parsed as JSON; nil when it does not parse (then ``jsonError`` says why).
    package var json: JSONValue?
    /// Why `text` is not JSON (often `finish_reason` `length`: the output was cut off); nil when it parsed.
    package var jsonError: String?
    package var finishReason: String?
    package var usage: LLMUsage?

    package init(runID: String, model: String, text: String, json: JSONValue?, jsonError: String?, finishReason: String?, usage: LLMUsage?) {
        self.runID = runID
        self.model = model
        self.text = text
        self.json = json
        self.jsonError = jsonError
        self.finishReason = finishReason
        self.usage = usage
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(runID, forKey: .runID)
        try container.encode(model, forKey: .model)
        try container.encode(text, forKey: .text)
        try container.encode(json ?? .null, forKey: .json)
        try container.encode(jsonError, forKey: .jsonError)
        try container.encode(finishReason, forKey: .finishReason)
        try container.encode(usage, forKey: .usage)
    }

    enum CodingKeys: String, CodingKey {
        case model, text, json, usage
        case runID = "run_id"
        case jsonError = "json_error"
        case finishReason = "finish_reason"
    }
}

/// One NDJSON line of a streamed `generate` or `chat` (`stream: true`): `{"delta": "..."}` lines, then one
/// `{"done": true, "run_id", "model", "finish_reason", "usage"}`; a failure after the stream began is a last
/// `{"done": true, "error": "..."}`.
package struct LLMStreamEvent: Codable, Sendable, Equatable {
    package var delta: String?
    package var done: Bool?
    package var runID: String?
    package var model: String?
    package var finishReason: String?
    package var usage: LLMUsage?
    package var error: String?

    package init(
        delta: String? = nil, done: Bool? = nil, runID: String? = nil, model: String? = nil, finishReason: String? = nil,
        usage: LLMUsage? = nil, error: String? = nil
    ) {
        self.delta = delta
        self.done = done
        self.runID = runID
        self.model = model
        self.finishReason = finishReason
        self.usage = usage
        self.error = error
    }

    enum CodingKeys: String, CodingKey {
        case delta, done, model, usage, error
        case runID = "run_id"
        case finishReason = "finish_reason"
    }
}

/// The reply to `count-tokens`.
package struct TokenCount: Codable, Sendable {
    /// The model whose tokenizer counted (the run's model, or the model as named).
    package var model: String
    /// The run whose model was used, when the request named one or `model` matched a run.
    package var runID: String?
    package var tokens: Int
    package var ids: [Int]

    package init(model: String, runID: String?, tokens: Int, ids: [Int]) {
        self.model = model
        self.runID = runID
        self.tokens = tokens
        self.ids = ids
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(model, forKey: .model)
        try container.encode(runID, forKey: .runID)
        try container.encode(tokens, forKey: .tokens)
        try container.encode(ids, forKey: .ids)
    }

    enum CodingKeys: String, CodingKey {
        case model, tokens, ids
        case runID = "run_id"
    }
}

/// Any JSON value (a schema, a structured output).
package indirect enum JSONValue: Codable, Sendable, Hashable {
    case null
    case bool(Bool)
    case integer(Int)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    package init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// The members of an object, or nil.
    package var objectValue: [String: JSONValue]? {
        if case .object(let members) = self { members } else { nil }
    }
}
