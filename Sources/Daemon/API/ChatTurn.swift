import Foundation
import HTTPTypes
import Launchers
import ModelText
import ModeldAPI
import Synchronization

/// One reply of a conversation on its way to an engine, shared by sessions (``SessionsController``) and the
/// WebSocket chat (``ChatSocket``): a lease from the scheduler, the history fitted to the model's context, and the
/// engine's streamed reply opened through ``EngineCall``.
struct ChatTurn {
    let scheduler: RunScheduler
    let metrics: DaemonMetrics
    let tokenizers: TokenizerCache
    /// Where each reply's usage row goes.
    let usage: UsageLedger

    /// The room left for the reply when neither the request nor the session sets `max_tokens`: a quarter of the
    /// context, at most this many tokens.
    static let defaultReplyRoom = 512

    /// A reply the engine has begun.
    struct Opened {
        let call: EngineCall
        let upstream: EngineReply
        /// How many of the oldest messages were left out to fit the context.
        let dropped: Int
        var run: RunInfo { call.run }
    }

    /// Takes a lease on a run of `model` (routed, started on demand), fits `messages` to its context, and opens the
    /// engine's streamed chat completion.
    /// - Parameters:
    ///   - messages: the conversation, its system prompt first; the last message is the one to answer.
    ///   - sampling: fields sent to the engine with the messages (`max_tokens`, `temperature`, ...); `max_context`
    ///     lowers the context the history is fitted to and is not sent.
    ///   - started: when the request arrived, for the time to first token.
    ///   - keyID: the API key the reply's usage is recorded for (nil: none); `route` names the request in that row.
    /// - Throws: ``APIError``: 400 when even the newest message alone does not fit; the scheduler's and engine's errors.
    func open(
        model: String, messages: [LLMMessage], sampling: JinjaObject, started: ContinuousClock.Instant, keyID: String?, route: String
    ) async throws -> Opened {
        let lease = try await scheduler.acquire(model)
        do {
            var body = sampling
            var maxContext: Int?
            if case .int(let value)? = body["max_context"] { maxContext = value }
            body["max_context"] = nil
            var maxTokens: Int?
            if case .int(let value)? = body["max_tokens"] { maxTokens = value }
            let (kept, dropped) = try await fit(messages, modelPath: lease.run.modelPath, maxContext: maxContext, maxTokens: maxTokens)
            body["messages"] = .array(kept.map { .object(JinjaObject(["role": .string($0.role), "content": .string($0.content)])) })
            let ticket = UsageTicket(
                ledger: usage, keyID: keyID, model: lease.run.model, backend: UsageTicket.backend(run: lease.run.name), route: route,
                started: started)
            let call = EngineCall(
                lease: lease, path: "/v1/chat/completions", kind: .chat, body: body, stream: true, metrics: metrics, started: started,
                ticket: ticket)
            return Opened(call: call, upstream: try await call.open(), dropped: dropped)
        } catch {
            lease.release()
            throw error
        }
    }

    /// The messages that fit the context with room for the reply: the leading system messages always, then the
    /// newest turns; the oldest turns (a user message with the replies after it) go first.
    /// The count is the model's own (its tokenizer and chat template) when its snapshot has them, else an estimate
    /// of four bytes a token; the context is the model's `max_position_embeddings`, lowered by `maxContext`.
    func fit(_ messages: [LLMMessage], modelPath: String?, maxContext: Int?, maxTokens: Int?) async throws -> (kept: [LLMMessage], dropped: Int) {
        var entry: TokenizerCache.Entry?
        if let modelPath { entry = try? await tokenizers.load(modelPath) }
        guard let context = [entry?.contextLength, maxContext].compactMap({ $0 }).min() else { return (messages, 0) }
        let room = maxTokens ?? min(Self.defaultReplyRoom, context / 4)
        let budget = context - room
        guard budget > 0 else {
            throw APIError.badRequest("max_tokens (\(room)) leaves no room for the conversation in a context of \(context) tokens")
        }
        let count: ([LLMMessage]) -> Int = { messages in
            if let entry, let template = try? entry.template.get(),
                let text = try? template.render(
                    messages: messages.map { .object(JinjaObject(["role": .string($0.role), "content": .string($0.content)])) },
                    addGenerationPrompt: true),
                let ids = try? entry.tokenizer.encode(text)
            {
                return ids.count
            }
            return messages.reduce(0) { $0 + ($1.content.utf8.count + 3) / 4 + 4 }
        }
        let pinned = messages.prefix { $0.role == "system" }
        var rest = Array(messages.dropFirst(pinned.count))
        var dropped = 0
        var tokens = count(pinned + rest)
        while tokens > budget, rest.count > 1 {
            repeat {
                rest.removeFirst()
                dropped += 1
            } while rest.count > 1 && rest[0].role != "user"
            tokens = count(pinned + rest)
        }
        guard tokens <= budget else {
            throw APIError.badRequest(
                "the message does not fit the model's context: \(tokens) tokens with the system prompt, \(budget) available "
                    + "(a context of \(context) less \(room) for the reply)")
        }
        return (pinned + rest, dropped)
    }
}

/// The replies being generated, by conversation (a session id): at most one per conversation, and each can be
/// stopped from elsewhere (`POST /api/v1/sessions/{id}/stop`, a WebSocket `stop`).
final class ActiveReplies: Sendable {
    /// One reply being generated.
    final class Reply: Sendable {
        private struct State {
            var stopped = false
            var clientGone = false
            var upstream: EngineReply?
        }
        private let state = Mutex(State())

        /// Whether ``stop()`` was called.
        var stopped: Bool { state.withLock { $0.stopped } }
        /// Whether ``clientWentAway()`` was called.
        var clientGone: Bool { state.withLock { $0.clientGone } }

        /// The engine's reply to stop; stopped at once when ``stop()`` or ``clientWentAway()`` came first.
        func attach(_ upstream: EngineReply) {
            let stopNow = state.withLock { state in
                state.upstream = upstream
                return state.stopped || state.clientGone
            }
            if stopNow { upstream.cancel() }
        }

        /// Stops the engine's reply: what was streamed so far is kept as a partial reply.
        func stop() { end { $0.stopped = true } }

        /// Stops the engine's reply because its client went away (``ClientDeparture``): what was generated so far is
        /// kept as a partial reply.
        func clientWentAway() { end { $0.clientGone = true } }

        private func end(_ mark: (inout State) -> Void) {
            let upstream = state.withLock { state in
                mark(&state)
                return state.upstream
            }
            upstream?.cancel()
        }
    }

    private let replies = Mutex<[String: Reply]>([:])

    /// Registers a reply for `key`. - Throws: 409 when one is being generated already.
    func begin(_ key: String) throws -> Reply {
        try replies.withLock { replies in
            guard replies[key] == nil else {
                throw APIError(.conflict, "a reply in session \(key) is being generated: wait for it, or stop it")
            }
            let reply = Reply()
            replies[key] = reply
            return reply
        }
    }

    func end(_ key: String, _ reply: Reply) {
        replies.withLock { replies in
            if replies[key] === reply { replies[key] = nil }
        }
    }

    /// Stops the reply being generated for `key`. - Returns: false when there is none.
    func stop(_ key: String) -> Bool {
        guard let reply = replies.withLock({ $0[key] }) else { return false }
        reply.stop()
        return true
    }
}
