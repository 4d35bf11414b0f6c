import Catalog
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import ModelStore
import ModeldAPI
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOHTTPTypesHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// Serves the daemon's router on a listening socket it already owns (bound by us or passed by systemd).
///
/// Hummingbird's `Application` binds its own address; socket activation needs the inherited fd, and the
/// control socket needs a second listener, so this service drives Hummingbird's HTTP/1 channel directly.
/// On graceful shutdown it stops accepting, lets in-flight requests finish, and closes idle connections.
struct HTTPListener: Service, CustomStringConvertible {
    /// How long in-flight requests may run after shutdown begins before their connections are closed.
    static let drainTime: Duration = .seconds(10)

    let socket: ListeningSocket
    let responder: RouterResponder<DaemonRequestContext>
    let logger: Logger
    let serverName: String
    /// What the gateway's fast path below the router (``GatewayFastPath``) needs, on every connection.
    let daemon: DaemonContext
    /// Ollama's API, whose chats and generations the fast path answers too.
    let ollama: OllamaController
    /// Called once the socket is registered and accepting.
    let onListening: @Sendable () async -> Void

    var description: String { "HTTPListener(\(socket.description))" }

    func run() async throws {
        let dateCache = HTTPDateCache()
        let gateway = GatewayFastPathShared(daemon: daemon, dateCache: dateCache, serverName: serverName, origins: daemon.origins, ollama: ollama)
        let responder = self.responder
        let logger = self.logger
        let serverName = self.serverName
        let limits = ConnectionLimits(daemon: daemon.configuration)
        let respond: HTTPChannelHandler.Responder = { request, writer, channel in
            var requestLogger = logger
            // Formatted once: every `context.id` reads it back.
            requestLogger[metadataKey: "hb.request.id"] = .string(RequestID().description)
            let context = DaemonRequestContext(source: .init(channel: channel, logger: requestLogger))
            var response: Response
            do {
                response = try await responder.respond(to: request, context: context)
            } catch let error as HTTPParserError {
                throw error
            } catch {
                requestLogger.error("unhandled error", metadata: ["error": "\(error)"])
                response = Response(status: .internalServerError)
            }
            response.headers[.date] = dateCache.now()
            response.headers[.server] = serverName
            try await writer.write(response: response.head, body: response.body)
        }
        // The Ollama listener serves Ollama's API only: no WebSocket chat there.
        let chat = socket.servesOllama ? nil : ChatSocket(daemon: daemon)
        let http1 = DaemonHTTPChannel(responder: respond, limits: limits, chat: chat, gateway: gateway)
        // The control socket stays plain HTTP: its file mode is its access control.
        if socket.kind == .tcp, let tls = daemon.tls {
            try await serve(SecureHTTPChannel(tls: tls, http1: http1, responder: respond, limits: limits), scheme: "https")
        } else {
            try await serve(http1, scheme: "http")
        }
    }

    /// Accepts connections on the socket and serves each through `child` until shutdown.
    private func serve<Child: ServerChildChannel>(_ child: Child, scheme: String) async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let quiesce = ServerQuiescingHelper(group: group)
        let logger = self.logger
        let maxConnections = daemon.configuration.maxConnections
        let server = try await ServerBootstrap(group: group)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AvailableConnectionsChannelHandler(maxConnections: maxConnections))
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .bind(NIOBSDSocket.Handle(socket.fd)) { channel in child.setup(channel: channel, logger: logger) }
        // The Ollama listener names its address under its own key: tools that read the daemon's port from the
        // first `socket=` line must not take it.
        logger.info("listening", metadata: [socket.servesOllama ? "ollama" : "socket": "\(socket.description)", "scheme": "\(scheme)"])
        await onListening()

        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                try await server.executeThenClose { inbound in
                    try await withThrowingDiscardingTaskGroup { connections in
                        for try await connection in inbound {
                            connections.addTask { await child.handle(value: connection, logger: logger) }
                        }
                    }
                }
            }
            // On shutdown: stop accepting, let each connection finish its request, and close what is left
            // after the drain time.
            try? await gracefulShutdown()
            quiesce.initiateShutdown(promise: nil)
            let drained = tasks.addTaskUnlessCancelled {
                try await Task.sleep(for: Self.drainTime)
                throw CancellationError()
            }
            _ = drained
            do {
                try await tasks.next()
            } catch {}
            tasks.cancelAll()
        }
    }
}

extension ConnectionLimits {
    /// The daemon's connection limits, from its configuration; the errors the guard answers are the route family's
    /// (OpenAI's shape under `/v1/`, Ollama's under its `/api/*`, the envelope elsewhere).
    init(daemon configuration: DaemonConfiguration) {
        self.init(
            idleTimeout: configuration.idleTimeout, headerTimeout: configuration.headerTimeout, bodyTimeout: configuration.bodyTimeout,
            maxBodySize: configuration.maxBodySize, streamedBodyPaths: ["/api/v1/models/import"]
        ) { code, message, path in
            ErrorShape.of(path: path ?? "").body(APIError(HTTPResponse.Status(code: code), message), requestID: RequestID().description)
        }
    }
}

/// The `Date` header value, formatted at most once a second.
final class HTTPDateCache: Sendable {
    private let state = Mutex<(second: Int, text: String)>((-1, ""))

    func now() -> String {
        let seconds = Int(Date().timeIntervalSince1970)
        return state.withLock { cached in
            if cached.second != seconds {
                cached = (seconds, Self.imfFixdate(seconds))
            }
            return cached.text
        }
    }

    /// RFC 9110's IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) from the C library: Foundation's date formatting
    /// would load ICU's calendar and locale data (about 5 MB of RSS) into the daemon for this one header.
    static func imfFixdate(_ seconds: Int) -> String {
        let time = UTCTime(seconds: seconds)
        let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        return "\(weekdays[time.weekday]), \(UTCTime.padded(time.day, 2)) \(months[time.month - 1]) \(time.year) "
            + "\(UTCTime.padded(time.hour, 2)):\(UTCTime.padded(time.minute, 2)):\(UTCTime.padded(time.second, 2)) GMT"
    }
}

/// The request context of the daemon's routes: knows whether the request came over the control socket,
/// which is trusted for administration (its file mode, 0660, is the access control).
struct DaemonRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// True for requests on the unix control socket.
    let isControlSocket: Bool
    /// The API key the request was allowed with (``AuthMiddleware``); nil when it needed none.
    var apiKey: APIKeyRecord?
    /// The request's connection (its stream, over HTTP/2): a streamed reply watches it for the client going away
    /// (``ClientDeparture``).
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        isControlSocket = source.channel.localAddress?.protocol == .unix
        channel = source.channel
    }
}
