import FoundationEssentials

/// The sampling options of a session, sent with each of its requests to the engine (a message's own fields win).
/// Fields not listed here (`top_k`, `ignore_eos`) pass through to the engine unchanged.
package struct SessionOptions: Codable, Sendable, Equatable {
    package var maxTokens: Int?
    package var temperature: Double?
    package var topP: Double?
    package var seed: Int?
    /// The most tokens of history (with the reply's `max_tokens`) sent to the engine, when lower than the model's
    /// context length.
    package var maxContext: Int?

    package init(maxTokens: Int? = nil, temperature: Double? = nil, topP: Double? = nil, seed: Int? = nil, maxContext: Int? = nil) {
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topP = topP
        self.seed = seed
        self.maxContext = maxContext
    }

    enum CodingKeys: String, CodingKey {
        case temperature, seed
        case maxTokens = "max_tokens"
        case topP = "top_p"
        case maxContext = "max_context"
    }
}

/// `POST /api/v1/sessions`.
package struct SessionCreateRequest: Codable, Sendable {
    package var model: String
    /// A name to resume the session by, unique among sessions.
    package var name: String?
    /// The system prompt, always sent first and never trimmed.
    package var system: String?
    package var options: SessionOptions?

    package init(model: String, name: String? = nil, system: String? = nil, options: SessionOptions? = nil) {
        self.model = model
        self.name = name
        self.system = system
        self.options = options
    }
}

/// One message of a session.
package struct SessionMessage: Codable, Sendable, Equatable {
    package var id: Int64
    /// The message before it on its branch; nil for the first.
    package var parentID: Int64?
    /// `user` or `assistant`.
    package var role: String
    package var content: String
    /// A reply cut off before it was complete (the client went away, a stop, the engine broke off).
    package var partial: Bool
    package var finishReason: String?
    package var usage: LLMUsage?
    /// The ids of the other messages at this point of the conversation (an edited message, a regenerated reply).
    package var alternatives: [Int64]
    package var createdAt: Date

    package init(
        id: Int64, parentID: Int64?, role: String, content: String, partial: Bool, finishReason: String?, usage: LLMUsage?,
        alternatives: [Int64], createdAt: Date
    ) {
        self.id = id
        self.parentID = parentID
        self.role = role
        self.content = content
        self.partial = partial
        self.finishReason = finishReason
        self.usage = usage
        self.alternatives = alternatives
        self.createdAt = createdAt
    }

    enum CodingKeys: String, CodingKey {
        case id, role, content, partial, usage, alternatives
        case parentID = "parent_id"
        case finishReason = "finish_reason"
        case createdAt = "created_at"
    }
}

/// A session; `messages` (the branch in use, oldest first) only when one session is asked for.
package struct SessionInfo: Codable, Sendable {
    package var id: String
    package var name: String?
    package var model: String
    package var system: String?
    package var options: SessionOptions
    /// The messages on the branch in use.
    package var messageCount: Int
    package var createdAt: Date
    package var updatedAt: Date
    package var messages: [SessionMessage]?

    package init(
        id: String, name: String?, model: String, system: String?, options: SessionOptions, messageCount: Int, createdAt: Date,
        updatedAt: Date, messages: [SessionMessage]?
    ) {
        self.id = id
        self.name = name
        self.model = model
        self.system = system
        self.options = options
        self.messageCount = messageCount
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.messages = messages
    }

    enum CodingKeys: String, CodingKey {
        case id, name, model, system, options, messages
        case messageCount = "message_count"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }
}

/// `GET /api/v1/sessions`: one page, newest first.
package struct SessionPage: Codable, Sendable {
    package var sessions: [SessionInfo]
    package var total: Int
    package var limit: Int
    package var offset: Int

    package init(sessions: [SessionInfo], total: Int, limit: Int, offset: Int) {
        self.sessions = sessions
        self.total = total
        self.limit = limit
        self.offset = offset
    }
}

/// `POST /api/v1/sessions/{id}/messages` (and a message's `edit`): the user's message, and sampling fields for
/// this reply only. `regenerate` takes the same body without `content`.
package struct SessionMessageRequest: Codable, Sendable {
    package var content: String?
    package var stream: Bool?
    package var maxTokens: Int?
    package var temperature: Double?
    package var topP: Double?
    package var seed: Int?

    package init(content: String?, stream: Bool? = nil, maxTokens: Int? = nil, temperature: Double? = nil, seed: Int? = nil) {
        self.content = content
        self.stream = stream
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.seed = seed
    }

    enum CodingKeys: String, CodingKey {
        case content, stream, temperature, seed
        case maxTokens = "max_tokens"
        case topP = "top_p"
    }
}

/// The reply to a session's message (with `stream: false`): the stored reply and how the history was trimmed.
package struct SessionReply: Codable, Sendable {
    package var sessionID: String
    package var runID: String
    package var message: SessionMessage
    package var usage: LLMUsage?
    /// How many of the oldest messages were left out to fit the model's context (the system prompt never is).
    package var dropped: Int

    package init(sessionID: String, runID: String, message: SessionMessage, usage: LLMUsage?, dropped: Int) {
        self.sessionID = sessionID
        self.runID = runID
        self.message = message
        self.usage = usage
        self.dropped = dropped
    }

    enum CodingKeys: String, CodingKey {
        case message, usage, dropped
        case sessionID = "session_id"
        case runID = "run_id"
    }
}

/// One NDJSON line of a session's streamed reply: `delta` lines, then one line with `done: true` and the stored
/// `message` (partial when the engine broke off, with `error`).
package struct SessionStreamEvent: Codable, Sendable {
    package var delta: String?
    package var done: Bool?
    package var sessionID: String?
    package var runID: String?
    package var message: SessionMessage?
    package var finishReason: String?
    package var usage: LLMUsage?
    package var dropped: Int?
    package var error: String?

    package init(
        delta: String? = nil, done: Bool? = nil, sessionID: String? = nil, runID: String? = nil, message: SessionMessage? = nil,
        finishReason: String? = nil, usage: LLMUsage? = nil, dropped: Int? = nil, error: String? = nil
    ) {
        self.delta = delta
        self.done = done
        self.sessionID = sessionID
        self.runID = runID
        self.message = message
        self.finishReason = finishReason
        self.usage = usage
        self.dropped = dropped
        self.error = error
    }

    enum CodingKeys: String, CodingKey {
        case delta, done, message, usage, dropped, error
        case sessionID = "session_id"
        case runID = "run_id"
        case finishReason = "finish_reason"
    }
}

/// `POST /api/v1/sessions/{id}/rollback`: keep the messages up to `to` (a message id on the branch in use; 0
/// drops them all) and delete the ones after it.
package struct SessionRollbackRequest: Codable, Sendable {
    package var to: Int64

    package init(to: Int64) { self.to = to }
}

/// `POST /api/v1/sessions/{id}/checkout`: use the branch that ends at `message` (from a message's `alternatives`).
package struct SessionCheckoutRequest: Codable, Sendable {
    package var message: Int64

    package init(message: Int64) { self.message = message }
}
