import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import ModelStore
import ModelText
import ModeldAPI
import NIOCore
import NIOWebSocket
import Synchronization

/// The WebSocket chat, `GET /api/v1/chat/ws` (docs/websocket-chat.md): JSON text frames both ways.
///
/// The client sends `{"type": "chat", "model": ..., "messages": [...], ...sampling fields}` or `{"type": "chat",
/// "session": id, "content": ...}` (one new message in a stored session), `{"type": "stop"}` to end the reply being
/// generated, and `{"type": "ping"}`; the server answers `{"type": "delta", "content": ...}` frames then
/// `{"type": "done", "finish_reason": ..., "usage": {...}}`, `{"type": "pong"}`, or `{"type": "error", "message": ...}`.
/// The API key comes in the upgrade's `Authorization` header or in a first `{"type": "auth", "key": ...}` frame
/// (never in the URL); each chat frame counts against the key's rate limit as a request would. A message larger
/// than ``maxMessage`` closes the connection (1009), and a connection sends at most ``messagesPerMinute`` frames.
/// The server pings every ``pingInterval`` and closes a connection that does not answer.
struct ChatSocket: Sendable {
    typealias Context = HTTP1WebSocketUpgradeChannel.Context

    static let path = "/api/v1/chat/ws"
    /// The largest message a client may send (a frame or a fragmented message).
    static let maxMessage = 1 << 20
    /// The most frames a connection may send in a minute (bursts up to that many).
    static let messagesPerMinute = 120
    /// How long a connection without a key in its upgrade has to send its auth frame.
    static let authTimeout: Duration = .seconds(10)
    static let pingInterval: Duration = .seconds(30)

    let authorizer: Authorizer
    let origins: OriginPolicy
    let sessions: SessionsController
    let turn: ChatTurn
    let replies: ActiveReplies

    init(daemon: DaemonContext) {
        authorizer = daemon.authorizer
        origins = daemon.origins
        turn = daemon.chatTurn
        replies = daemon.replies
        sessions = SessionsController(store: daemon.store, authorizer: daemon.authorizer, turn: daemon.chatTurn, active: daemon.replies)
    }

    /// The WebSocket server's settings: the message limit and the server's pings.
    static var configuration: WebSocketServerConfiguration {
        WebSocketServerConfiguration(maxFrameSize: maxMessage, autoPing: .enabled(timePeriod: pingInterval))
    }

    /// The handler for an upgrade request, or nil to answer it as HTTP (the router then answers: another path, a
    /// refused origin or key, a missing upgrade).
    func upgrade(_ head: HTTPRequest, isControlSocket: Bool) async throws -> WebSocketDataHandler<Context>? {
        guard let path = head.path, path.split(separator: "?", maxSplits: 1).first == Substring(Self.path) else { return nil }
        let store = authorizer.store
        let keysExist = try await store.hasActiveAPIKeys()
        // A web page of another site must not open a chat with the user's daemon (browsers send Origin).
        let verdict = origins.verdict(
            method: .get, origin: head.headerFields[.origin], host: head.authority, keysExist: keysExist, isControlSocket: isControlSocket)
        if case .refuse = verdict { return nil }
        let authorization = head.headerFields[.authorization]
        if authorization != nil || !keysExist {
            let decision = try await authorizer.decide(path: Self.path, authorization: authorization, isControlSocket: isControlSocket)
            guard decision.allows else { return nil }
        }
        let connection = Connection(
            socket: self, authorization: authorization, isControlSocket: isControlSocket,
            authorized: authorization != nil || !keysExist || isControlSocket)
        return { inbound, outbound, context in try await connection.run(inbound: inbound, outbound: outbound, logger: context.logger) }
    }
}

extension ChatSocket {
    /// One WebSocket connection: its key, its frame budget and the reply it is generating.
    final class Connection: Sendable {
        let socket: ChatSocket
        let isControlSocket: Bool
        /// The key, as an `Authorization` header value; and whether it has been accepted.
        private let auth: Mutex<(authorization: String?, authorized: Bool)>
        private let limiter = RateLimiter()
        /// The key under which this connection's replies without a session are registered in ``ActiveReplies``.
        private let id = "ws_" + UUID().uuidString.lowercased()
        /// The session (or ``id``) of the reply being generated.
        private let generating = Mutex<String?>(nil)

        init(socket: ChatSocket, authorization: String?, isControlSocket: Bool, authorized: Bool) {
            self.socket = socket
            self.isControlSocket = isControlSocket
            auth = Mutex((authorization, authorized))
        }

        func run(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, logger: Logger) async throws {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                if !auth.withLock({ $0.authorized }) {
                    tasks.addTask { [self] in
                        try await Task.sleep(for: ChatSocket.authTimeout)
                        if !auth.withLock({ $0.authorized }) {
                            try await outbound.close(.policyViolation, reason: "no auth frame within \(ChatSocket.authTimeout)")
                        }
                    }
                }
                defer {
                    if let key = generating.withLock({ $0 }) { _ = socket.replies.stop(key) }
                }
                for try await message in inbound.messages(maxSize: ChatSocket.maxMessage) {
                    guard case .text(let text) = message else {
                        try await send(outbound, error: "frames must be JSON text")
                        continue
                    }
                    if let wait = limiter.take(key: id, perMinute: ChatSocket.messagesPerMinute) {
                        try await send(outbound, error: "too many frames: at most \(ChatSocket.messagesPerMinute) a minute; retry in \(wait) s")
                        continue
                    }
                    guard case .object(let frame)? = try? JinjaValue(json: Array(text.utf8)), case .string(let type)? = frame["type"] else {
                        try await send(outbound, error: "a frame must be a JSON object with a type")
                        continue
                    }
                    if !auth.withLock({ $0.authorized }) {
                        guard type == "auth", case .string(let key)? = frame["key"] else {
                            try await send(outbound, error: "send {\"type\": \"auth\", \"key\": ...} first (or the key in the Authorization header)")
                            try await outbound.close(.policyViolation, reason: "not authenticated")
                            return
                        }
                        let decision = try await socket.authorizer.decide(
                            path: ChatSocket.path, authorization: "Bearer \(key)", isControlSocket: false)
                        guard decision.allows else {
                            if case .deny(_, let why, _) = decision { try await send(outbound, error: why) }
                            try await outbound.close(.policyViolation, reason: "not authenticated")
                            return
                        }
                        auth.withLock { $0 = ("Bearer \(key)", true) }
                        continue
                    }
                    switch type {
                    case "ping":
                        try await send(outbound, Frame(type: "pong"))
                    case "auth":
                        try await send(outbound, error: "already authenticated")
                    case "stop":
                        if let key = generating.withLock({ $0 }) { _ = socket.replies.stop(key) }
                    case "chat":
                        guard generating.withLock({ $0 == nil }) else {
                            try await send(outbound, error: "a reply is being generated: wait for its done frame, or send stop")
                            continue
                        }
                        let key: String
                        if case .string(let session)? = frame["session"] { key = session } else { key = id }
                        generating.withLock { $0 = key }
                        tasks.addTask { [self] in
                            let last = await chat(frame, outbound: outbound, logger: logger)
                            // Free before the last frame: a client may send its next chat as soon as it reads it.
                            generating.withLock { $0 = nil }
                            if let last { try? await send(outbound, last) }
                        }
                    default:
                        try await send(outbound, error: "unknown frame type \(type): chat, stop, ping or auth")
                    }
                }
                tasks.cancelAll()
            }
        }

        /// Answers one chat frame with delta frames. - Returns: the frame that ends the reply (done or error); nil
        /// when the connection is gone.
        private func chat(_ frame: JinjaObject, outbound: WebSocketOutboundWriter, logger: Logger) async -> Frame? {
            let started = ContinuousClock.now
            do {
                let authorization = auth.withLock { $0.authorization }
                // Each chat is a request for the key's rate limit.
                let decision = try await socket.authorizer.decide(
                    path: ChatSocket.path, authorization: authorization, isControlSocket: isControlSocket)
                let key: APIKeyRecord?
                switch decision {
                case .allow(let allowed): key = allowed
                case .deny(_, let why, _): throw APIError(.tooManyRequests, why)
                }
                var sampling = frame
                for field in ["type", "model", "messages", "session", "content", "message"] { sampling[field] = nil }
                let outcome: EngineCall.Outcome
                let stopped: Bool
                if case .string(let id)? = frame["session"] {
                    guard let content = Self.content(of: frame) else {
                        throw APIError.badRequest("a chat frame with a session carries one new message: content")
                    }
                    let caller = try await socket.sessions.caller(authorization: authorization, isControlSocket: isControlSocket)
                    let tree = try await socket.sessions.session(id, for: caller)
                    let generation = try await socket.sessions.say(content, in: tree.session, sampling: sampling, started: started)
                    (_, outcome) = await generation.finish { delta in try await self.send(outbound, Frame(type: "delta", content: delta)) }
                    stopped = generation.reply.stopped
                } else {
                    guard case .string(let model)? = frame["model"], !model.isEmpty else { throw APIError.badRequest("model must be given") }
                    let messages = try Self.messages(frame["messages"])
                    try Authorizer.check(model: model, for: key)
                    let reply = try socket.replies.begin(id)
                    defer { socket.replies.end(id, reply) }
                    let opened = try await socket.turn.open(
                        model: model, messages: messages, sampling: sampling, started: started, keyID: key?.id, route: ChatSocket.path)
                    reply.attach(opened.upstream)
                    outcome = await opened.call.relay(opened.upstream) { delta in try await self.send(outbound, Frame(type: "delta", content: delta))
                    }
                    stopped = reply.stopped
                }
                if outcome.abandoned != nil { return nil }
                if let problem = outcome.problem, !stopped { return Frame(type: "error", message: problem) }
                return Frame(type: "done", finishReason: stopped ? "stopped" : outcome.finishReason, usage: outcome.usage)
            } catch let error as any APIErrorConvertible {
                return Frame(type: "error", message: error.apiError.message)
            } catch {
                logger.debug("chat frame failed", metadata: ["error": "\(error)"])
                return Frame(type: "error", message: "\(error)")
            }
        }

        private func send(_ outbound: WebSocketOutboundWriter, _ frame: Frame) async throws {
            try await outbound.write(.text(String(decoding: try WireJSON.encoder().encode(frame), as: UTF8.self)))
        }

        private func send(_ outbound: WebSocketOutboundWriter, error message: String) async throws {
            try await send(outbound, Frame(type: "error", message: message))
        }

        /// The new message of a session's chat frame: `content`, or `message` as text or as `{role, content}`.
        private static func content(of frame: JinjaObject) -> String? {
            switch (frame["content"], frame["message"]) {
            case (.string(let text)?, _), (nil, .string(let text)?): return text.isEmpty ? nil : text
            case (nil, .object(let message)?):
                if case .string(let text)? = message["content"], !text.isEmpty { return text }
                return nil
            default: return nil
            }
        }

        /// A chat frame's `messages`: a non-empty list of `{role, content}` with text content.
        private static func messages(_ value: JinjaValue?) throws -> [LLMMessage] {
            guard case .array(let items)? = value, !items.isEmpty else { throw APIError.badRequest("messages must be a non-empty list") }
            return try items.map { item in
                guard case .object(let message) = item, case .string(let role)? = message["role"], case .string(let content)? = message["content"]
                else { throw APIError.badRequest("each message is {\"role\": ..., \"content\": \"text\"}") }
                return LLMMessage(role: role, content: content)
            }
        }
    }

    /// A frame the server sends: `delta`, `done`, `pong` or `error`.
    struct Frame: Encodable {
        var type: String
        var content: String?
        var finishReason: String?
        var usage: LLMUsage?
        var message: String?

        enum CodingKeys: String, CodingKey {
            case type, content, usage, message
            case finishReason = "finish_reason"
        }
    }
}
