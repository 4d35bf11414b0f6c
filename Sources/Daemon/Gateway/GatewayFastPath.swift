import Foundation
import Hummingbird
import Launchers
import Logging
import ModelStore
import ModeldAPI
import NIOCore
import NIOHTTP1
import Tracing

/// What the gateway's fast path needs, shared by every connection of a listener.
struct GatewayFastPathShared: Sendable {
    let daemon: DaemonContext
    /// The listener's own, so that forwarded replies carry the `Date` and `Server` headers routed ones do.
    let dateCache: HTTPDateCache
    let serverName: String
    let client = EngineClient.shared
    /// Built once: the fast path asks it about every request's `Host`.
    let origins: OriginPolicy
    /// Ollama's API, whose chats and generations the fast path answers too (its aliases).
    let ollama: OllamaController
    /// Whether forwarded requests get spans (docs/tracing.md).
    var tracing: Bool { daemon.tracing != nil }
}

/// The gateway's fast path, below the router: a `POST` to `/v1/chat/completions`, `/v1/completions` or
/// `/v1/embeddings` that names a ready run is forwarded to its engine from the connection's own channel
/// pipeline, on its event loop, with no task, async channel or router in between (issue #7's added latency).
/// So is Ollama's `/api/chat` and `/api/generate` with messages or a prompt for a ready run: the engine's SSE
/// becomes Ollama's lines or whole reply as it arrives, through the conversion the router's handler uses
/// (``OllamaTurn``, ``OllamaRelay``), the request's `keep_alive` applied to the run once the request is allowed.
/// Ollama requests with `format` or images, and loads and unloads, are the router's.
///
/// It does what ``GatewayController`` does for such a request, with no policy of its own: a lease on the run
/// ``RunScheduler/acquireReady(_:)`` chooses (released when the exchange ends), the body byte for byte
/// but `model`'s value, the reply streamed chunk by chunk with backpressure or sent whole, the engine's request
/// cancelled when the client goes away, tokens and the time to first token counted, the request logged with its
/// id and counted in `modeld_http_requests_total`, API keys and their rate limits applied. Everything else
/// passes to the router unchanged: other routes, a model with no ready run (an on-demand start), a body that is
/// not a JSON object or is too large, a request the API keys refuse, `Connection: close` and `Expect`.
///
/// Responses keep the requests' order: while a request is forwarded, what the client sends next (a pipelining
/// client's next requests, a half-close, a malformed request) waits until the reply has been written, and a
/// request that could be forwarded is left to the router while the router still owes an answer. A shutdown
/// (``ChannelShouldQuiesceEvent``) waits the same way, and ends forwarding on the connection.
final class GatewayFastPath: ChannelDuplexHandler, RemovableChannelHandler, EngineReplySink {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        /// A request that may be forwarded (``collecting``), until its body is in.
        case collecting
        /// A request forwarded (``exchange``), until its reply is.
        case forwarding
        /// The end of a forwarded reply is being written; what came after it waits until it is out.
        case flushing
        /// A request the router answers, until its last part has gone to it.
        case passing

        /// Whether what the client sends now must wait (the fast path owes a reply before it).
        var holds: Bool { self == .forwarding || self == .flushing }
    }

    /// A request that may be forwarded, while its body arrives.
    private struct Collecting {
        let head: HTTPRequestHead
        let path: String
        let started: ContinuousClock.Instant
        /// When the request began, for its span (nil: tracing is off).
        let spanStart: DefaultTracerClock.Instant?
        var body: ByteBuffer?
    }

    /// One forwarded request.
    private struct Exchange {
        let id: String
        let route: String
        /// The request's hold on its run, released when the exchange ends.
        let lease: RunLease
        /// The `model` label of the token metrics: the model the run serves.
        var model: String { lease.run.model }
        let streamed: Bool
        let started: ContinuousClock.Instant
        /// The request's usage account.
        let ticket: UsageTicket
        /// The exchange with the engine, to pause, resume or cancel.
        var engine: EngineExchange?
        var status: Int?
        var contentType = "application/json"
        /// A whole reply while it arrives.
        var collected: ByteBuffer?
        /// A streamed reply's token count.
        var meter: ReplyMeter?
        /// Reading from the engine waits until the client's connection can take more.
        var paused = false
        /// An Ollama chat or generate: the engine's stream on its way to Ollama's reply.
        var ollama: OllamaRelay?
        /// The request's span and its engine call's, when tracing is on.
        var span: (any Span)?
        var engineSpan: EngineCallSpan?

        /// The engine took the request (a 2xx head): an Ollama reply's lines may begin.
        var accepted: Bool { status.map { (200..<300).contains($0) } ?? false }
    }

    /// What the client's side delivered while the fast path held it, in order.
    private enum Held {
        case part(HTTPServerRequestPart)
        case event(Any)
        case error(any Error)
    }

    private let shared: GatewayFastPathShared
    private let isControlSocket: Bool
    private var context: ChannelHandlerContext?
    private var state = State.idle
    /// Kept outside ``state`` so that buffers grow in place.
    private var collecting: Collecting?
    private var exchange: Exchange?
    /// Requests handed to the router that it has not answered in full.
    private var routerOwes = 0
    /// Parts, events and errors that came while a forwarded reply was owed.
    private var held: [Held] = []
    /// Events (a half-close, a shutdown) that came while a request was being collected: they follow it.
    private var heldEvents: [Any] = []
    private var readHeld = false
    /// Parts went to the router since its last read-complete event.
    private var forwardedSinceReadComplete = false
    /// No more requests are forwarded here: shutdown began, or the router answered with `Connection: close`.
    private var closing = false

    init(shared: GatewayFastPathShared, isControlSocket: Bool) {
        self.shared = shared
        self.isControlSocket = isControlSocket
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    // MARK: Requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if state.holds {
            held.append(.part(part))
            return
        }
        handle(part, context: context)
    }

    private func handle(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch (state, part) {
        case (.idle, .head(let head)):
            if let path = forwardablePath(head) {
                state = .collecting
                collecting = Collecting(head: head, path: path, started: .now, spanStart: shared.tracing ? DefaultTracerClock.now : nil)
            } else {
                // The router closes the connection after a request without keep-alive: none after it is forwarded.
                if !head.isKeepAlive { closing = true }
                routerOwes += 1
                state = .passing
                forward(part, context: context)
            }
        case (.collecting, .body(var chunk)):
            if (collecting!.body?.readableBytes ?? 0) + chunk.readableBytes > GatewayController.maxBody {
                // Too large to forward: the router answers it (413).
                handToRouter(context: context)
                forward(part, context: context)
            } else if collecting!.body == nil {
                collecting!.body = chunk
            } else {
                collecting!.body!.writeBuffer(&chunk)
            }
        case (.collecting, .end):
            if startForwarding(context: context) {
                // Events that came with the request follow its reply.
                held.append(contentsOf: heldEvents.map { .event($0) })
                heldEvents = []
            } else {
                handToRouter(context: context)
                handle(part, context: context)
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

    /// The route of a request that may be forwarded, or nil for the router's.
    private func forwardablePath(_ head: HTTPRequestHead) -> String? {
        // A request from a web page (`Origin`) is left to the router's origin and host checks (``OriginPolicy``).
        guard head.method == .POST, head.version == .http1_1, head.isKeepAlive, routerOwes == 0, !closing,
            !head.headers.contains(name: "expect"), !head.headers.contains(name: "origin"),
            isControlSocket || head.headers.first(name: "host").map(shared.origins.names(host:)) ?? true
        else { return nil }
        let path = head.uri.firstIndex(of: "?").map { String(head.uri[..<$0]) } ?? head.uri
        guard GatewayController.engineRoutes.contains(path) || OllamaController.fastPathRoutes.contains(path) else { return nil }
        if let length = head.headers.first(name: "content-length").flatMap({ Int($0) }), length > GatewayController.maxBody { return nil }
        return path
    }

    /// The request read so far goes to the router, and the events held while it was read follow it; the rest of
    /// the request will follow too (``State/passing``).
    private func handToRouter(context: ChannelHandlerContext) {
        guard let request = collecting else { return }
        collecting = nil
        routerOwes += 1
        state = .passing
        forward(.head(request.head), context: context)
        if let body = request.body { forward(.body(body), context: context) }
        let events = heldEvents
        heldEvents = []
        for event in events { context.fireUserInboundEventTriggered(event) }
    }

    /// A header's value as the router reads it: repeated fields joined with ", ".
    private static func field(_ name: String, of head: HTTPRequestHead) -> String? {
        let values = head.headers[name]
        return values.isEmpty ? nil : values.joined(separator: ", ")
    }

    /// Starts forwarding the request whose body is in, when it names a ready run and may be made.
    /// - Returns: false when the router should answer it instead (nothing has been done then).
    private func startForwarding(context: ChannelHandlerContext) -> Bool {
        guard let request = collecting, let body = request.body else { return false }
        if OllamaController.fastPathRoutes.contains(request.path) { return startOllama(request, body: body, context: context) }
        // A model that upstreams serve, or a model group, is routed with failover by the router.
        guard let members = JSONMembers(body.readableBytesView), let model = members.string("model"), !model.isEmpty,
            shared.daemon.router.servesLocallyOnly(model), let lease = shared.daemon.scheduler.acquireReady(model)
        else { return false }
        let run = lease.run
        let payload = run.servedName == model ? body : ByteBuffer(bytes: members.replacing("model", with: JSONMembers.encode(run.servedName)))
        let accept = Self.field("accept", of: request.head) ?? "*/*"
        guard let endpoint = run.endpoint,
            let upstream = try? EngineRequest(
                endpoint: endpoint, path: request.path, headers: [("Content-Type", "application/json"), ("Accept", accept)], body: payload)
        else {
            lease.release()
            return false
        }
        return begin(
            request, lease: lease, model: model, upstream: upstream, streamed: members.bool("stream") == true, promptBody: body, context: context)
    }

    /// Starts an Ollama chat or generate the fast path may answer (``OllamaController/fastPathTurn(path:body:)``),
    /// as the router's handler would: the engine always streams, with the token counts at the end.
    private func startOllama(_ request: Collecting, body: ByteBuffer, context: ChannelHandlerContext) -> Bool {
        guard let turn = OllamaController.fastPathTurn(path: request.path, body: body),
            let target = try? shared.ollama.resolvedAlias(turn.name)
        else { return false }
        let beforeLoad = ContinuousClock.now
        guard let lease = shared.daemon.scheduler.acquireReady(target.routeModel) else { return false }
        let loadDuration = ContinuousClock.now - beforeLoad
        let run = lease.run
        guard let endpoint = run.endpoint,
            let upstream = try? EngineRequest(
                endpoint: endpoint, path: turn.kind.path, headers: [("Content-Type", "application/json"), ("Accept", "text/event-stream")],
                body: turn.engineBody(servedName: run.servedName))
        else {
            lease.release()
            return false
        }
        let metrics = shared.daemon.metrics, sent = ContinuousClock.now
        let relay = { (ticket: UsageTicket) in
            OllamaRelay(
                model: turn.modelText, kind: turn.kind, stream: turn.stream, started: request.started, loadDuration: loadDuration, sent: sent,
                tally: StreamTokenTally(model: run.model, started: request.started, metrics: metrics, ticket: ticket))
        }
        return begin(
            request, lease: lease, model: turn.modelText, upstream: upstream, streamed: turn.stream, keepAlive: turn.keepAlive, ollama: relay,
            context: context)
    }

    /// Forwards a request on its lease when the API keys allow it; else releases the lease.
    /// - Parameters:
    ///   - model: the model the request names, for the key's allowed models.
    ///   - keepAlive: the request's keep-alive, applied to the run once the request is allowed.
    ///   - promptBody: the OpenAI request's body, whose prompt a stream without usage has counted.
    ///   - ollama: makes the Ollama reply's relay, given the request's usage account.
    /// - Returns: false when the router should answer it instead.
    private func begin(
        _ request: Collecting, lease: RunLease, model: String, upstream: EngineRequest, streamed: Bool, keepAlive: KeepAlive? = nil,
        promptBody: ByteBuffer? = nil, ollama: ((UsageTicket) -> OllamaRelay)? = nil, context: ChannelHandlerContext
    ) -> Bool {
        // Last: a request the API keys allow has taken from its key's rate bucket, and must then be forwarded here.
        let authorization = Self.field("authorization", of: request.head)
        guard
            case .allow(let key)? = shared.daemon.authorizer.decideNow(
                path: request.path, authorization: authorization, isControlSocket: isControlSocket, model: model)
        else {
            lease.release()
            return false
        }
        if let keepAlive { shared.daemon.scheduler.apply(keepAlive, to: lease) }
        let id = RequestID().description
        var upstream = upstream
        var span: (any Span)?
        if let start = request.spanStart {
            span = Self.requestSpan(request, id: id, run: lease.run, at: start)
            upstream.span = EngineCallSpan(&upstream, parent: span!.context)
        }
        collecting = nil
        var ticket = UsageTicket(
            ledger: shared.daemon.usage, keyID: key?.id, model: lease.run.model, backend: UsageTicket.backend(run: lease.run.name),
            route: request.path, started: request.started)
        // A stream carries no usage unless the client asked for it: its prompt may have to be counted.
        if streamed, let promptBody, let directory = lease.run.modelPath {
            ticket.prompt = UsageLedger.PromptSource(body: promptBody, modelPath: directory)
        }
        exchange = Exchange(
            id: id, route: request.path, lease: lease, streamed: streamed, started: request.started, ticket: ticket, ollama: ollama?(ticket),
            span: span, engineSpan: upstream.span)
        state = .forwarding
        let engine = shared.client.exchange(upstream, on: context.eventLoop, to: self)
        // The exchange may have ended already (a refused connection is reported at once).
        if exchange?.id == id { exchange!.engine = engine }
        return true
    }

    /// The span of a forwarded request: a child of the client's span when it sent a `traceparent`.
    private static func requestSpan(_ request: Collecting, id: String, run: RunInfo, at start: DefaultTracerClock.Instant) -> any Span {
        var parent = InstrumentationContext.topLevel
        InstrumentationSystem.instrument.extract(request.head.headers, into: &parent, using: NIOHeadersExtractor())
        let span = startSpan(request.path, context: parent, ofKind: .server, at: start)
        span.updateAttributes { attributes in
            attributes["http.request.method"] = "POST"
            attributes["http.route"] = request.path
            attributes["url.path"] = request.path
            attributes["modeld.relay"] = "fast_path"
            attributes["modeld.request_id"] = id
            attributes["modeld.run"] = run.name
        }
        return span
    }

    // MARK: The engine's reply

    // A write to the client can fail at once and close its channel, which calls `channelInactive` (and so
    // `complete`) before the write returns: each method below is done with `exchange` before it writes.

    func engineHead(_ head: HTTPResponseHead) {
        guard state == .forwarding, exchange != nil, let context else { return }
        exchange!.status = Int(head.status.code)
        exchange!.contentType = head.headers.first(name: "content-type") ?? "application/json"
        guard let exchange, exchange.streamed else { return }
        if exchange.ollama != nil {
            // Lines once the engine took the request; its refusal is answered whole, once read (``finishOllama``).
            guard exchange.accepted else { return }
            let headers = responseHeaders(id: exchange.id, contentType: OllamaRelay.streamContentType)
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            return
        }
        var headers = responseHeaders(id: exchange.id, contentType: exchange.contentType)
        if let cache = head.headers.first(name: "cache-control") { headers.add(name: "Cache-Control", value: cache) }
        if (200..<300).contains(head.status.code), exchange.contentType.lowercased().hasPrefix("text/event-stream") {
            self.exchange!.meter = ReplyMeter(
                model: exchange.model, started: exchange.started, metrics: shared.daemon.metrics, ticket: exchange.ticket)
        }
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: head.status, headers: headers))), promise: nil)
    }

    func engineBody(_ chunk: ByteBuffer) -> Bool {
        guard state == .forwarding, let current = exchange, let context else { return false }
        if current.ollama != nil { return ollamaBody(chunk, context: context) }
        if current.streamed {
            // Counted first: a client that has gone away has been sent what is counted.
            current.meter?.observe(chunk)
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(chunk))), promise: nil)
            guard exchange?.id == current.id else { return false }
            exchange!.paused = !context.channel.isWritable
            return !exchange!.paused
        }
        var chunk = chunk
        if exchange!.collected == nil {
            exchange!.collected = chunk
        } else {
            exchange!.collected!.writeBuffer(&chunk)
        }
        if exchange!.collected!.readableBytes > EngineClient.maxWholeReply {
            exchange!.engine?.cancel()
            replyFailed(EngineClientError.replyTooLarge(limit: EngineClient.maxWholeReply), context: context)
            return false
        }
        return true
    }

    func engineEnd() {
        guard state == .forwarding, let exchange, let context else { return }
        if exchange.ollama != nil {
            finishOllama(nil, context: context)
            return
        }
        let status = exchange.status ?? 502
        var usage: ReplyMeter.Usage?
        if !exchange.streamed, let body = exchange.collected, (200..<300).contains(status),
            exchange.contentType.lowercased().hasPrefix("application/json")
        {
            usage = shared.daemon.metrics.recordUsage(ofReply: body.readableBytesView, model: exchange.model)
        }
        complete(code: status, usage: usage)
        let sent = context.eventLoop.makePromise(of: Void.self)
        if exchange.streamed {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: sent)
        } else {
            let body = exchange.collected ?? ByteBuffer()
            writeWhole(status: status, contentType: exchange.contentType, body: body, id: exchange.id, promise: sent, context: context)
        }
        resume(after: sent.futureResult, context: context)
    }

    func engineFailed(_ error: any Error) {
        guard let context else { return }
        replyFailed(error, context: context)
    }

    /// The engine did not answer, broke off, or sent too much: a 502 when the client has had nothing yet, else
    /// its connection is closed (a streamed reply cannot be ended cleanly).
    private func replyFailed(_ error: any Error, context: ChannelHandlerContext) {
        guard state == .forwarding, let exchange else { return }
        if exchange.ollama != nil {
            // No head: the engine did not answer; a refusal is answered with what came of it.
            let failure = exchange.status == nil ? OllamaError.engineDidNotAnswer(exchange.lease.run, error) : nil
            finishOllama(exchange.accepted ? OllamaRelay.brokeOff(error) : failure, context: context)
            return
        }
        if exchange.streamed, let status = exchange.status {
            abandon(code: status, context: context)
            return
        }
        complete(code: 502)
        let body = ErrorShape.openAI.body(.engineDidNotAnswer(error), requestID: exchange.id)
        let sent = context.eventLoop.makePromise(of: Void.self)
        writeWhole(status: 502, contentType: "application/json", body: body, id: exchange.id, promise: sent, context: context)
        resume(after: sent.futureResult, context: context)
    }

    // MARK: Ollama's replies

    /// A piece of an Ollama reply: converted, its lines written at once when the client asked for lines; or a
    /// piece of the engine's refusal, kept for the error reply.
    private func ollamaBody(_ chunk: ByteBuffer, context: ChannelHandlerContext) -> Bool {
        guard exchange!.accepted else {
            var chunk = chunk
            if exchange!.collected == nil {
                exchange!.collected = chunk
            } else {
                exchange!.collected!.writeBuffer(&chunk)
            }
            guard exchange!.collected!.readableBytes > OllamaController.maxRefusal else { return true }
            exchange!.engine?.cancel()
            finishOllama(nil, context: context)
            return false
        }
        let piece = exchange!.ollama!.feed(chunk)
        var lines = ByteBuffer()
        if exchange!.streamed {
            for delta in piece.deltas {
                var line = exchange!.ollama!.line(delta)
                lines.writeBuffer(&line)
            }
        }
        if let failure = piece.failure {
            exchange!.engine?.cancel()
            finishOllama(failure, after: lines, context: context)
            return false
        }
        guard lines.readableBytes > 0 else { return true }
        let id = exchange!.id
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(lines))), promise: nil)
        guard exchange?.id == id else { return false }
        exchange!.paused = !context.channel.isWritable
        return !exchange!.paused
    }

    /// Ends an Ollama chat or generate as the router's handler ends it: the closing lines, or the whole reply; a
    /// failure as Ollama reports it, a last line once lines have gone out, else an error reply.
    /// - Parameters:
    ///   - failure: the engine's stream failed (nil: it ended, or its refusal was read, which this reads).
    ///   - lines: lines converted before the failure, not yet written.
    private func finishOllama(_ failure: OllamaError?, after lines: ByteBuffer = ByteBuffer(), context: ChannelHandlerContext) {
        guard state == .forwarding, let exchange, let relay = exchange.ollama else { return }
        var failure = failure
        if failure == nil, !exchange.accepted {
            failure = OllamaController.engineError(status: exchange.status ?? 502, body: Data((exchange.collected ?? ByteBuffer()).readableBytesView))
        } else if failure == nil, !relay.done {
            failure = OllamaRelay.endedEarly
        }
        let sent = context.eventLoop.makePromise(of: Void.self)
        if exchange.streamed, exchange.accepted {
            var body = lines
            var last = failure?.line ?? relay.closingLines()
            body.writeBuffer(&last)
            complete(code: 200)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: sent)
        } else {
            let status = failure.map { Int($0.status.code) } ?? 200
            let body = failure.map { ErrorShape.ollama.body($0.apiError, requestID: "") } ?? OllamaJSON.encode(relay.wholeReply())
            complete(code: status)
            writeWhole(status: status, contentType: OllamaJSON.contentType, body: body, id: exchange.id, promise: sent, context: context)
        }
        resume(after: sent.futureResult, context: context)
    }

    private func writeWhole(
        status: Int, contentType: String, body: ByteBuffer, id: String, promise: EventLoopPromise<Void>, context: ChannelHandlerContext
    ) {
        var headers = responseHeaders(id: id, contentType: contentType)
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers))),
            promise: nil)
        if body.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: promise)
    }

    /// The headers the router's replies carry too.
    private func responseHeaders(id: String, contentType: String) -> HTTPHeaders {
        ["Content-Type": contentType, "X-Request-Id": id, "Date": shared.dateCache.now(), "Server": shared.serverName]
    }

    /// The forwarded request is over (its reply's end is about to be written, or the client went away): it is
    /// counted and logged, its tokens and usage recorded, and the run is free of it. What the client sent meanwhile
    /// still waits (``State/flushing``).
    /// - Parameter usage: a whole reply's count (a streamed one is its meter's).
    private func complete(code: Int, usage: ReplyMeter.Usage? = nil) {
        guard let exchange else { return }
        self.exchange = nil
        state = .flushing
        if let meter = exchange.meter {
            meter.finish(status: code)
        } else if var relay = exchange.ollama {
            relay.finish(status: code)
        } else {
            exchange.ticket.record(status: code, usage: usage)
        }
        exchange.lease.release()
        exchange.engineSpan?.end()
        if let span = exchange.span {
            span.attributes["http.response.status_code"] = code
            if code >= 500 { span.setStatus(SpanStatus(code: .error)) }
            span.end()
        }
        var logger = shared.daemon.logger
        if logger.logLevel <= .info { logger[metadataKey: "hb.request.id"] = .string(exchange.id) }
        RequestLogMiddleware<DaemonRequestContext>.record(
            method: "POST", route: exchange.route, path: exchange.route, code: code, model: exchange.lease.run.model, streamed: exchange.streamed,
            duration: .now - exchange.started, logger: logger, metrics: shared.daemon.metrics, fastPath: true)
    }

    /// Once the reply's last bytes are out (so that a half-close or shutdown delivered next cannot cut them off):
    /// what the client sent meanwhile, in order, then reading.
    private func resume(after sent: EventLoopFuture<Void>, context: ChannelHandlerContext) {
        sent.assumeIsolated().whenComplete { _ in
            guard self.state == .flushing else { return }
            self.state = .idle
            self.resumeHeld(context: context)
        }
    }

    private func resumeHeld(context: ChannelHandlerContext) {
        guard context.channel.isActive else {
            held = []
            return
        }
        while !held.isEmpty, !state.holds {
            switch held.removeFirst() {
            case .part(let part): handle(part, context: context)
            case .event(let event): userInboundEventTriggered(context: context, event: event)
            case .error(let error): errorCaught(context: context, error: error)
            }
        }
        if forwardedSinceReadComplete {
            forwardedSinceReadComplete = false
            context.fireChannelReadComplete()
        }
        if readHeld, !state.holds {
            readHeld = false
            context.read()
        }
    }

    /// Ends the forwarded request and the connection: the client cannot be answered.
    private func abandon(code: Int, context: ChannelHandlerContext) {
        complete(code: code)
        held = []
        context.close(promise: nil)
    }

    // MARK: The client's connection

    func read(context: ChannelHandlerContext) {
        // While a reply is owed, reading goes on (a client that goes away is noticed) until the client sends more.
        if state.holds, !held.isEmpty {
            readHeld = true
            return
        }
        context.read()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where !head.isKeepAlive || head.headers[canonicalForm: "connection"].contains(where: { $0.lowercased() == "close" }):
            // The router closes the connection after this reply: nothing after it may be forwarded.
            closing = true
        case .end:
            // At most what was handed over: a reply to no request (a malformed one) is the router's own.
            routerOwes = max(0, routerOwes - 1)
        default:
            break
        }
        context.write(data, promise: promise)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, state == .forwarding, exchange?.paused == true {
            exchange!.paused = false
            exchange!.engine?.resume()
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent { closing = true }
        if state == .forwarding, let exchange, case .inputClosed? = event as? ChannelEvent {
            // The client closed its side before the reply came: as proxies read it, it went away (a client that
            // stops waiting closes its socket, and the kernel tells us no more than that). The engine's request
            // is cancelled rather than left to run for nobody.
            exchange.engine?.cancel()
            abandon(code: 499, context: context)
            return
        }
        switch state {
        case .forwarding, .flushing:
            held.append(.event(event))
        case .collecting:
            if case .inputClosed? = event as? ChannelEvent {
                // The request will not be completed: the router gets it as far as it came, as without the fast path.
                handToRouter(context: context)
                context.fireUserInboundEventTriggered(event)
            } else {
                heldEvents.append(event)
            }
        case .idle, .passing:
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch state {
        case .forwarding, .flushing:
            // A malformed request after a forwarded one: the router hears of it after the reply, in order.
            held.append(.error(error))
        case .collecting:
            // The router gets the request as far as it came, then the error, as it would have without the fast path.
            handToRouter(context: context)
            context.fireErrorCaught(error)
        case .idle, .passing:
            context.fireErrorCaught(error)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if state == .forwarding, let exchange {
            // The client went away: the engine's request is cancelled. 499, as proxies log it: the client closed
            // the connection before the reply was complete.
            exchange.engine?.cancel()
            complete(code: 499)
        }
        held = []
        context.fireChannelInactive()
    }
}
