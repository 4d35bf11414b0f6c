import Foundation
import Hummingbird
import Launchers
import Logging
import ModeldAPI
import NIOCore
import NIOHTTP1

/// What the gateway's relay needs from the daemon, shared by every connection.
struct GatewayLane: Sendable {
    let supervisor: Supervisor
    let activity: OutstandingRequests
    let authorizer: Authorizer
    let metrics: DaemonMetrics
    /// Carries each relayed request's id in its log line.
    let logger: Logger
    let dateCache = HTTPDateCache()
    let serverName = "modeld/\(modeldVersion)"
    let client = EngineClient.shared

    init(_ daemon: DaemonContext) {
        supervisor = daemon.supervisor
        activity = daemon.activity
        authorizer = daemon.authorizer
        metrics = daemon.metrics
        logger = daemon.logger
    }
}

/// The gateway's fast lane, below the router: a `POST` to `/v1/chat/completions`, `/v1/completions` or
/// `/v1/embeddings` that names a ready run is relayed to its engine from the connection's own channel
/// pipeline, on its event loop, with no task, async channel or router in between (issue #7's added latency).
///
/// It does what ``GatewayController`` does for such a request: the least busy ready run, the body byte for byte
/// but `model`'s value, the reply streamed chunk by chunk with backpressure or sent whole, the engine's request
/// cancelled when the client goes away, tokens and the time to first token counted, the request logged with its
/// id and counted in `modeld_http_requests_total`, API keys and their rate limits applied. Everything else
/// passes to the router unchanged: other routes, a model with no ready run (an on-demand start), a body that is
/// not a JSON object or is too large, a request the API keys refuse, `Connection: close` and `Expect`.
///
/// Responses keep the requests' order: while a request is relayed, the parts of the next (a pipelining client's)
/// wait, and a request that could be relayed is left to the router while the router still owes an answer.
final class GatewayRelay: ChannelDuplexHandler, RemovableChannelHandler, EngineRelaySink {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        /// A request that may be relayed (``collecting``), until its body is in.
        case collecting
        /// A request relayed (``exchange``), until its reply is.
        case relaying
        /// A request the router answers, until its last part has gone to it.
        case passing
    }

    /// A request that may be relayed, while its body arrives.
    private struct Collecting {
        let head: HTTPRequestHead
        let path: String
        let started: ContinuousClock.Instant
        var body: ByteBuffer?
    }

    /// One relayed request.
    private struct Exchange {
        let id: String
        let route: String
        let runID: String
        /// The `model` label of the token metrics: the model the run serves.
        let model: String
        let streamed: Bool
        let started: ContinuousClock.Instant
        var relay: EngineRelay?
        var status: Int?
        var contentType = "application/json"
        /// A whole reply while it arrives.
        var collected: ByteBuffer?
        /// A streamed reply's token count.
        var meter: ReplyMeter?
        /// Reading from the engine waits until the client's connection can take more.
        var paused = false
    }

    /// The largest reply sent whole (as ``EngineClient/fetch(_:limit:onEnd:)``).
    static let maxWholeReply = 256 << 20

    private let lane: GatewayLane
    private let isControlSocket: Bool
    private var context: ChannelHandlerContext?
    private var state = State.idle
    /// Kept outside ``state`` so that buffers grow in place.
    private var collecting: Collecting?
    private var exchange: Exchange?
    /// Requests handed to the router that it has not answered in full.
    private var routerOwes = 0
    /// Parts read while a request is relayed (a pipelining client's next requests).
    private var queued: [HTTPServerRequestPart] = []
    /// Events held while a request is relayed or read (a half-close, a shutdown), delivered after it.
    private var heldEvents: [Any] = []
    private var readHeld = false
    /// Parts went to the router since its last read-complete event.
    private var forwardedSinceReadComplete = false
    /// Shutdown began: no more requests are relayed here; the router's connection handling closes the connection.
    private var quiescing = false

    init(lane: GatewayLane, isControlSocket: Bool) {
        self.lane = lane
        self.isControlSocket = isControlSocket
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    // MARK: Requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if state == .relaying {
            queued.append(part)
            return
        }
        handle(part, context: context)
    }

    private func handle(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch (state, part) {
        case (.idle, .head(let head)):
            if let path = relayablePath(head) {
                state = .collecting
                collecting = Collecting(head: head, path: path, started: .now)
            } else {
                routerOwes += 1
                state = .passing
                forward(part, context: context)
            }
        case (.collecting, .body(var chunk)):
            if (collecting!.body?.readableBytes ?? 0) + chunk.readableBytes > GatewayController.maxBody {
                // Too large to relay: the router answers it (413).
                handToRouter(context: context)
                state = .passing
                forward(part, context: context)
            } else if collecting!.body == nil {
                collecting!.body = chunk
            } else {
                collecting!.body!.writeBuffer(&chunk)
            }
        case (.collecting, .end):
            if !startRelay(context: context) {
                handToRouter(context: context)
                state = .idle
                forward(part, context: context)
            }
        case (.passing, .end):
            state = .idle
            forward(part, context: context)
        default:
            forward(part, context: context)
        }
    }

    private func forward(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        forwardedSinceReadComplete = true
        context.fireChannelRead(wrapInboundOut(part))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        forwardedSinceReadComplete = false
        context.fireChannelReadComplete()
    }

    /// The route of a request that may be relayed, or nil for the router's.
    private func relayablePath(_ head: HTTPRequestHead) -> String? {
        guard head.method == .POST, head.version == .http1_1, head.isKeepAlive, routerOwes == 0, !quiescing,
            !head.headers.contains(name: "expect")
        else { return nil }
        let path = head.uri.firstIndex(of: "?").map { String(head.uri[..<$0]) } ?? head.uri
        guard GatewayController.relayedPaths.contains(path) else { return nil }
        if let length = head.headers.first(name: "content-length").flatMap({ Int($0) }), length > GatewayController.maxBody { return nil }
        return path
    }

    /// The request read so far goes to the router.
    private func handToRouter(context: ChannelHandlerContext) {
        guard let request = collecting else { return }
        collecting = nil
        routerOwes += 1
        forward(.head(request.head), context: context)
        if let body = request.body { forward(.body(body), context: context) }
    }

    /// Starts relaying the request whose body is in, when it names a ready run and may be made.
    /// - Returns: false when the router should answer it instead (nothing has been done then).
    private func startRelay(context: ChannelHandlerContext) -> Bool {
        guard let request = collecting, let body = request.body, let members = JSONMembers(body.readableBytesView),
            let model = members.string("model"), !model.isEmpty
        else { return false }
        let head = request.head, path = request.path
        let candidates = GatewayController.readyRuns(model, in: lane.supervisor)
        guard !candidates.isEmpty else { return false }
        let run = GatewayController.leastBusy(candidates, outstanding: lane.activity)
        guard let endpoint = run.endpoint else { return false }
        let payload = run.servedName == model ? body : ByteBuffer(bytes: members.replacing("model", with: JSONMembers.encode(run.servedName)))
        let accept = head.headers.first(name: "accept") ?? "*/*"
        guard
            let upstream = try? EngineRequest(
                endpoint: endpoint, path: path, headers: [("Content-Type", "application/json"), ("Accept", accept)], body: payload),
            (try? lane.authorizer.decide(path: path, authorization: head.headers.first(name: "authorization"), isControlSocket: isControlSocket))
                == .allow
        else { return false }

        let id = RequestID().description
        collecting = nil
        exchange = Exchange(
            id: id, route: path, runID: run.runID, model: run.model, streamed: members.bool("stream") == true, started: request.started)
        lane.activity.begin(run.runID)
        state = .relaying
        let relay = lane.client.relay(upstream, on: context.eventLoop, to: self)
        // The relay may have ended already (a refused connection is reported at once).
        if exchange?.id == id { exchange!.relay = relay }
        return true
    }

    // MARK: The engine's reply

    func relayHead(_ head: HTTPResponseHead) {
        guard state == .relaying, exchange != nil, let context else { return }
        exchange!.status = Int(head.status.code)
        exchange!.contentType = head.headers.first(name: "content-type") ?? "application/json"
        guard let exchange, exchange.streamed else { return }
        var headers = responseHeaders(exchange, contentType: exchange.contentType)
        if let cache = head.headers.first(name: "cache-control") { headers.add(name: "Cache-Control", value: cache) }
        if (200..<300).contains(head.status.code), exchange.contentType.lowercased().hasPrefix("text/event-stream") {
            self.exchange!.meter = ReplyMeter(model: exchange.model, started: exchange.started, metrics: lane.metrics)
        }
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: head.status, headers: headers))), promise: nil)
    }

    func relayBody(_ chunk: ByteBuffer) -> Bool {
        guard state == .relaying, exchange != nil, let context else { return false }
        if exchange!.streamed {
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(chunk))), promise: nil)
            exchange!.meter?.observe(chunk)
            exchange!.paused = !context.channel.isWritable
            return !exchange!.paused
        }
        var chunk = chunk
        if exchange!.collected == nil {
            exchange!.collected = chunk
        } else {
            exchange!.collected!.writeBuffer(&chunk)
        }
        if exchange!.collected!.readableBytes > Self.maxWholeReply {
            exchange!.relay?.cancel()
            replyFailed(EngineClientError.replyTooLarge(limit: Self.maxWholeReply), context: context)
            return false
        }
        return true
    }

    func relayEnd() {
        guard state == .relaying, let exchange, let context else { return }
        let status = exchange.status ?? 502
        if exchange.streamed {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            exchange.meter?.finish()
        } else {
            let body = exchange.collected ?? ByteBuffer()
            if (200..<300).contains(status), exchange.contentType.lowercased().hasPrefix("application/json") {
                lane.metrics.recordUsage(ofReply: body.readableBytesView, model: exchange.model)
            }
            writeWhole(status: status, contentType: exchange.contentType, body: body, context: context)
        }
        finish(code: status, context: context)
    }

    func relayFailed(_ error: any Error) {
        guard let context else { return }
        replyFailed(error, context: context)
    }

    /// The engine did not answer, broke off, or sent too much: a 502 when the client has had nothing yet, else
    /// its connection is closed (a streamed reply cannot be ended cleanly).
    private func replyFailed(_ error: any Error, context: ChannelHandlerContext) {
        guard state == .relaying, let exchange else { return }
        if exchange.streamed, let status = exchange.status {
            exchange.meter?.finish()
            queued = []
            finish(code: status, context: context)
            context.close(promise: nil)
            return
        }
        let body = openAIErrorBody(502, "the engine did not answer: \(error)", type: "BadGatewayError")
        writeWhole(status: 502, contentType: "application/json", body: body, context: context)
        finish(code: 502, context: context)
    }

    private func writeWhole(status: Int, contentType: String, body: ByteBuffer, context: ChannelHandlerContext) {
        guard let exchange else { return }
        var headers = responseHeaders(exchange, contentType: contentType)
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers))), promise: nil)
        if body.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    /// The headers the router's replies carry too.
    private func responseHeaders(_ exchange: Exchange, contentType: String) -> HTTPHeaders {
        ["Content-Type": contentType, "X-Request-Id": exchange.id, "Date": lane.dateCache.now(), "Server": lane.serverName]
    }

    /// The request is over: it is counted and logged, the run is free of it, and what waited goes on.
    private func finish(code: Int, context: ChannelHandlerContext) {
        guard let exchange else { return }
        self.exchange = nil
        state = .idle
        lane.activity.end(exchange.runID)
        var logger = lane.logger
        if logger.logLevel <= .info { logger[metadataKey: "hb.request.id"] = .string(exchange.id) }
        RequestLogMiddleware<DaemonRequestContext>.record(
            method: "POST", route: exchange.route, path: exchange.route, code: code, duration: .now - exchange.started, logger: logger,
            metrics: lane.metrics, relayed: true)
        resumeWaiting(context: context)
    }

    /// After a relayed request: the parts that came meanwhile, then the held events, then reading.
    private func resumeWaiting(context: ChannelHandlerContext) {
        while !queued.isEmpty, state != .relaying {
            handle(queued.removeFirst(), context: context)
        }
        if forwardedSinceReadComplete {
            forwardedSinceReadComplete = false
            context.fireChannelReadComplete()
        }
        guard state == .idle || state == .passing else { return }
        let events = heldEvents
        heldEvents = []
        for event in events { context.fireUserInboundEventTriggered(event) }
        if readHeld {
            readHeld = false
            context.read()
        }
    }

    // MARK: The client's connection

    func read(context: ChannelHandlerContext) {
        // While a request is relayed, reading goes on (a client that goes away is noticed) until the next
        // request begins to arrive.
        if state == .relaying, !queued.isEmpty {
            readHeld = true
            return
        }
        context.read()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { routerOwes -= 1 }
        context.write(data, promise: promise)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, state == .relaying, exchange?.paused == true {
            exchange!.paused = false
            exchange!.relay?.resume()
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent { quiescing = true }
        switch state {
        case .relaying, .collecting:
            heldEvents.append(event)
        case .idle, .passing:
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if state == .relaying, let exchange {
            // The client went away: the engine's request is cancelled. 499, as proxies log it: the client closed
            // the connection before the reply was complete.
            exchange.relay?.cancel()
            exchange.meter?.finish()
            queued = []
            finish(code: 499, context: context)
        }
        context.fireChannelInactive()
    }
}
