import Foundation
import Hummingbird
import Launchers
import ModelStore
import ModelText
import ModeldAPI
import NIOCore

/// Conversation sessions (`/api/v1/sessions`), kept in the store:
///
/// | route | what |
/// |---|---|
/// | `POST /api/v1/sessions` | a new session: `model`, `system`, `options` (sampling), `name` |
/// | `GET /api/v1/sessions` | the caller's sessions, newest first, paged (`limit`, `offset`) |
/// | `GET /api/v1/sessions/{id}` | one session with the messages of its branch in use |
/// | `DELETE /api/v1/sessions/{id}` | delete it |
/// | `POST /api/v1/sessions/{id}/messages` | a user message and its reply (NDJSON with `stream: true`) |
/// | `POST /api/v1/sessions/{id}/regenerate` | the last reply again, kept beside the old one |
/// | `POST /api/v1/sessions/{id}/messages/{message}/edit` | a user message rewritten: a new branch and its reply |
/// | `POST /api/v1/sessions/{id}/rollback` | delete the messages after `to` |
/// | `POST /api/v1/sessions/{id}/checkout` | use another branch |
/// | `POST /api/v1/sessions/{id}/stop` | stop the reply being generated (kept as partial) |
///
/// A session names its model as the LLM API does (routed, started on demand). Each reply sends the system prompt
/// and the branch's messages, the oldest turns left out when they do not fit the model's context
/// (``ChatTurn/fit(_:modelPath:maxContext:maxTokens:)``). A reply is stored when it is complete, and as partial
/// (marked so) when the client goes away, a stop ends it or the engine breaks off. A session belongs to the API key
/// that made it: other inference keys neither see nor touch it (404); admin keys and the control socket see all.
struct SessionsController {
    typealias Context = DaemonRequestContext
    let store: Store
    let authorizer: Authorizer
    let turn: ChatTurn
    let active: ActiveReplies

    /// The largest page of `GET /api/v1/sessions`.
    static let maxPage = 200

    func addRoutes(to group: RouterGroup<Context>) {
        group.post(use: create)
        group.get(use: list)
        group.get(":id", use: show)
        group.delete(":id", use: delete)
        group.post(":id/messages", use: append)
        group.post(":id/regenerate", use: regenerate)
        group.post(":id/messages/:message/edit", use: edit)
        group.post(":id/rollback", use: rollback)
        group.post(":id/checkout", use: checkout)
        group.post(":id/stop", use: stop)
    }

    @Sendable func create(_ request: Request, context: Context) async throws -> Envelope<SessionInfo> {
        let raw = try await RawBody.read(request)
        let fields = try APIError.decodeJSON(as: SessionCreateRequest.self, from: raw.data)
        guard !fields.model.trimmingCharacters(in: .whitespaces).isEmpty else { throw APIError.badRequest("model must not be empty", field: "model") }
        if let name = fields.name {
            guard !name.isEmpty, !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control || $0 == "/" }) else {
                throw APIError.badRequest("name must not be empty nor contain control characters or /", field: "name")
            }
        }
        var options = JinjaObject()
        if let given = raw.object["options"] {
            guard case .object(let object) = given else { throw APIError.badRequest("options must be an object", field: "options") }
            options = object
        }
        let caller = try await caller(request, context: context)
        let record = SessionRecord(
            id: "ses_" + UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: ""), name: fields.name,
            owner: caller.owner, model: fields.model, system: fields.system, options: try JinjaValue.object(options).pythonJSON())
        try await store.createSession(record)
        return Envelope(requestID: context.id, data: try Self.info(SessionTree(session: record, messages: []), messages: false))
    }

    @Sendable func list(_ request: Request, context: Context) async throws -> Envelope<SessionPage> {
        let query = request.uri.queryParameters
        let limit = try Self.number(query["limit"].map(String.init), "limit", default: 50, range: 1...Self.maxPage)
        let offset = try Self.number(query["offset"].map(String.init), "offset", default: 0, range: 0...Int.max)
        let caller = try await caller(request, context: context)
        let (records, total) = try await store.sessions(owner: caller.seesAll ? nil : caller.owner, limit: limit, offset: offset)
        let counts = try await store.sessionMessageCounts(records.map(\.id))
        let sessions = try records.map { record in
            var info = try Self.info(SessionTree(session: record, messages: []), messages: false)
            info.messageCount = counts[record.id] ?? 0
            return info
        }
        return Envelope(requestID: context.id, data: SessionPage(sessions: sessions, total: total, limit: limit, offset: offset))
    }

    @Sendable func show(_ request: Request, context: Context) async throws -> Envelope<SessionInfo> {
        Envelope(requestID: context.id, data: try Self.info(try await session(request, context: context), messages: true))
    }

    @Sendable func delete(_ request: Request, context: Context) async throws -> Envelope<SessionInfo> {
        let tree = try await session(request, context: context)
        _ = active.stop(tree.session.id)
        try await store.deleteSession(tree.session.id)
        return Envelope(requestID: context.id, data: try Self.info(tree, messages: false))
    }

    @Sendable func append(_ request: Request, context: Context) async throws -> Response {
        let started = ContinuousClock.now
        let tree = try await session(request, context: context)
        let raw = try await RawBody.read(request)
        let fields = try APIError.decodeJSON(as: SessionMessageRequest.self, from: raw.data)
        guard let content = fields.content, !content.isEmpty else { throw APIError.badRequest("content must not be empty", field: "content") }
        var sampling = raw.object
        for field in ["content", "stream"] { sampling[field] = nil }
        let generation = try await say(content, in: tree.session, sampling: sampling, started: started)
        return try await respond(generation, stream: fields.stream == true, request: request, context: context)
    }

    /// Adds a user message at the head of the session and opens the engine's reply to it.
    func say(_ content: String, in session: SessionRecord, sampling: JinjaObject, started: ContinuousClock.Instant) async throws -> SessionGeneration
    {
        let user = try await store.appendSessionMessage(
            SessionMessageRecord(sessionID: session.id, parentID: session.headID, role: "user", content: content))
        return try await begin(after: user, in: session, sampling: sampling, started: started)
    }

    @Sendable func regenerate(_ request: Request, context: Context) async throws -> Response {
        let started = ContinuousClock.now
        let tree = try await session(request, context: context)
        let raw = try await RawBody.read(request, allowEmpty: true)
        let fields = try APIError.decodeJSON(as: SessionMessageRequest.self, from: raw.data)
        guard fields.content == nil else { throw APIError.badRequest("regenerate takes no content: edit the message instead", field: "content") }
        // The user message the last reply answers (or that has none yet).
        guard let last = tree.branch.last, let user = last.role == "user" ? last : tree.path(to: last.parentID).last, user.role == "user"
        else {
            throw APIError(.conflict, "session \(tree.session.id) has no user message to answer")
        }
        return try await reply(
            after: user, in: tree.session, raw: raw, stream: fields.stream == true, started: started, request: request, context: context)
    }

    @Sendable func edit(_ request: Request, context: Context) async throws -> Response {
        let started = ContinuousClock.now
        let tree = try await session(request, context: context)
        let id = try Self.messageID(try context.parameters.require("message"))
        guard let original = tree.messages.first(where: { $0.id == id }), original.role == "user" else {
            throw APIError.notFound("session \(tree.session.id) has no user message \(id)")
        }
        let raw = try await RawBody.read(request)
        let fields = try APIError.decodeJSON(as: SessionMessageRequest.self, from: raw.data)
        guard let content = fields.content, !content.isEmpty else { throw APIError.badRequest("content must not be empty", field: "content") }
        let user = try await store.appendSessionMessage(
            SessionMessageRecord(sessionID: tree.session.id, parentID: original.parentID, role: "user", content: content))
        return try await reply(
            after: user, in: tree.session, raw: raw, stream: fields.stream == true, started: started, request: request, context: context)
    }

    @Sendable func rollback(_ request: Request, context: Context) async throws -> Envelope<SessionInfo> {
        let tree = try await session(request, context: context)
        let fields = try await request.decodeJSON(as: SessionRollbackRequest.self, context: context)
        guard fields.to >= 0 else { throw APIError.badRequest("to must be a message id, or 0 for none", field: "to") }
        let moved = try await store.moveSessionHead(tree.session.id, to: fields.to == 0 ? nil : fields.to, dropAfter: true)
        return Envelope(requestID: context.id, data: try Self.info(moved, messages: true))
    }

    @Sendable func checkout(_ request: Request, context: Context) async throws -> Envelope<SessionInfo> {
        let tree = try await session(request, context: context)
        let fields = try await request.decodeJSON(as: SessionCheckoutRequest.self, context: context)
        let moved = try await store.moveSessionHead(tree.session.id, to: fields.message, dropAfter: false)
        return Envelope(requestID: context.id, data: try Self.info(moved, messages: true))
    }

    @Sendable func stop(_ request: Request, context: Context) async throws -> Envelope<SessionInfo> {
        let tree = try await session(request, context: context)
        guard active.stop(tree.session.id) else { throw APIError(.conflict, "no reply is being generated in session \(tree.session.id)") }
        return Envelope(requestID: context.id, data: try Self.info(tree, messages: false))
    }
}

// MARK: - Replies

extension SessionsController {
    /// Generates and stores the reply to `user`, the session's new head: streamed as NDJSON, or one envelope.
    private func reply(
        after user: SessionMessageRecord, in session: SessionRecord, raw: RawBody, stream: Bool, started: ContinuousClock.Instant,
        request: Request, context: Context
    ) async throws -> Response {
        var sampling = raw.object
        for field in ["content", "stream"] { sampling[field] = nil }
        let generation = try await begin(after: user, in: session, sampling: sampling, started: started)
        return try await respond(generation, stream: stream, request: request, context: context)
    }

    /// Relays a reply being generated: as NDJSON ``SessionStreamEvent`` lines, or one envelope once it is stored.
    /// A client that goes away meanwhile stops the reply, which is stored as partial.
    private func respond(_ generation: SessionGeneration, stream: Bool, request: Request, context: Context) async throws -> Response {
        let sessionID = generation.user.sessionID
        RequestTag.mark(model: generation.run.model, streamed: stream)
        let reply = generation.reply
        ClientDeparture.watch(context.channel) { reply.clientWentAway() }
        if !stream {
            let (stored, outcome) = await generation.finish(onDelta: { _ in })
            let message = try await stored.get()
            guard let message else { throw APIError(.badGateway, outcome.problem ?? "the engine gave no reply") }
            return try Envelope(
                requestID: context.id,
                data: SessionReply(
                    sessionID: sessionID, runID: generation.run.runID, message: message, usage: outcome.usage, dropped: generation.dropped)
            ).response(from: request, context: context)
        }
        return Response(
            status: .ok, headers: [.contentType: "application/x-ndjson", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                func send(_ event: SessionStreamEvent) async throws {
                    var line = try WireJSON.encoder().encode(event)
                    line.append(UInt8(ascii: "\n"))
                    try await writer.write(ByteBuffer(bytes: line))
                }
                let (stored, outcome) = await generation.finish { delta in try await send(SessionStreamEvent(delta: delta)) }
                if let error = outcome.abandoned { throw error }
                let message: SessionMessage?
                do {
                    message = try stored.get()
                } catch {
                    try await send(SessionStreamEvent(done: true, sessionID: sessionID, error: "the reply could not be stored: \(error)"))
                    try await writer.finish(nil)
                    return
                }
                try await send(
                    SessionStreamEvent(
                        done: true, sessionID: sessionID, runID: generation.run.runID, message: message, finishReason: outcome.finishReason,
                        usage: outcome.usage, dropped: generation.dropped, error: outcome.problem))
                try await writer.finish(nil)
            })
    }

    /// Opens the engine's reply to `user` with the branch that ends at it as history.
    func begin(after user: SessionMessageRecord, in session: SessionRecord, sampling: JinjaObject, started: ContinuousClock.Instant) async throws
        -> SessionGeneration
    {
        let tree = try await store.session(session.id)
        var history = tree.path(to: user.id).map { LLMMessage(role: $0.role, content: $0.content) }
        if let system = session.system, !system.isEmpty { history.insert(LLMMessage(role: "system", content: system), at: 0) }
        var body = JinjaObject()
        if case .object(let options)? = try? JinjaValue(json: Array(session.options.utf8)) { body = options }
        for (key, value) in sampling.pairs { body[key] = value }
        let reply = try active.begin(session.id)
        do {
            // The session's owner is the key its replies are counted for.
            let opened = try await turn.open(
                model: session.model, messages: history, sampling: body, started: started, keyID: session.owner, route: "/api/v1/sessions")
            reply.attach(opened.upstream)
            return SessionGeneration(opened: opened, reply: reply, user: user, store: store, active: active)
        } catch {
            active.end(session.id, reply)
            throw error
        }
    }
}

/// A session's reply being generated: relays the engine's text and stores the reply when it ends, complete or
/// partial.
struct SessionGeneration {
    let opened: ChatTurn.Opened
    let reply: ActiveReplies.Reply
    let user: SessionMessageRecord
    let store: Store
    let active: ActiveReplies
    var run: RunInfo { opened.run }
    var dropped: Int { opened.dropped }

    /// Relays the reply to `onDelta` until it ends, then stores it: complete, or partial when cut off with some text
    /// (nothing is stored for a reply cut off before its first word).
    /// - Returns: the stored message (nil when nothing was stored) and how the reply ended.
    func finish(onDelta: (String) async throws -> Void) async -> (Result<SessionMessage?, any Error>, EngineCall.Outcome) {
        var outcome = await opened.call.relay(opened.upstream, clientGone: { reply.clientGone }, onDelta: onDelta)
        if reply.stopped, outcome.abandoned == nil { outcome.problem = "stopped" }
        let complete = outcome.problem == nil && outcome.abandoned == nil
        let stored: Result<SessionMessage?, any Error>
        if complete || !outcome.text.isEmpty {
            let record = SessionMessageRecord(
                sessionID: user.sessionID, parentID: user.id, role: "assistant", content: outcome.text, partial: !complete,
                finishReason: complete ? outcome.finishReason : nil, promptTokens: outcome.usage?.promptTokens,
                completionTokens: outcome.usage?.completionTokens)
            do {
                let saved = try await store.appendSessionMessage(record)
                let tree = try await store.session(user.sessionID)
                stored = .success(SessionMessage(saved, in: tree))
            } catch {
                stored = .failure(error)
            }
        } else {
            stored = .success(nil)
        }
        active.end(user.sessionID, reply)
        return (stored, outcome)
    }
}

// MARK: - Owners, lookups, conversions

extension SessionsController {
    /// Who is asking: the key's id, and whether it sees every session (an admin key, the control socket, or no keys).
    /// - Parameter authorization: the `Authorization` header (or a WebSocket's auth message, as one).
    func caller(authorization: String?, isControlSocket: Bool) async throws -> (owner: String?, seesAll: Bool) {
        if isControlSocket { return (nil, true) }
        guard let key = try await authorizer.caller(authorization: authorization) else { return (nil, true) }
        return (key.id, key.scope == "admin")
    }

    private func caller(_ request: Request, context: Context) async throws -> (owner: String?, seesAll: Bool) {
        try await caller(authorization: request.headers[.authorization], isControlSocket: context.isControlSocket)
    }

    /// A session by id or name, when `caller` may see it (404 otherwise, as for one that does not exist).
    func session(_ id: String, for caller: (owner: String?, seesAll: Bool)) async throws -> SessionTree {
        let tree = try await store.session(id)
        guard caller.seesAll || tree.session.owner == caller.owner else {
            throw APIError.notFound("no session \(id): GET /api/v1/sessions lists them")
        }
        return tree
    }

    /// The session the path names, when the caller may see it.
    private func session(_ request: Request, context: Context) async throws -> SessionTree {
        try await session(try context.parameters.require("id"), for: try await caller(request, context: context))
    }

    static func info(_ tree: SessionTree, messages: Bool) throws -> SessionInfo {
        let options = (try? WireJSON.decoder().decode(SessionOptions.self, from: Data(tree.session.options.utf8))) ?? SessionOptions()
        let branch = tree.branch
        return SessionInfo(
            id: tree.session.id, name: tree.session.name, model: tree.session.model, system: tree.session.system, options: options,
            messageCount: branch.count, createdAt: tree.session.createdAt, updatedAt: tree.session.updatedAt,
            messages: messages ? branch.map { SessionMessage($0, in: tree) } : nil)
    }

    private static func messageID(_ text: String) throws -> Int64 {
        guard let id = Int64(text), id > 0 else { throw APIError.badRequest("\(text) is not a message id") }
        return id
    }

    private static func number(_ text: String?, _ name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text else { return value }
        guard let number = Int(text), range.contains(number) else {
            throw APIError.badRequest("\(name) must be a whole number in \(range.lowerBound)...\(range.upperBound)", field: name)
        }
        return number
    }
}

extension SessionMessage {
    init(_ record: SessionMessageRecord, in tree: SessionTree) {
        let usage = record.promptTokens.flatMap { prompt in record.completionTokens.map { LLMUsage(promptTokens: prompt, completionTokens: $0) } }
        self.init(
            id: record.id ?? 0, parentID: record.parentID, role: record.role, content: record.content, partial: record.partial,
            finishReason: record.finishReason, usage: usage, alternatives: tree.alternatives(to: record), createdAt: record.createdAt)
    }
}
