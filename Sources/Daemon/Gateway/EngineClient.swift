import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization
import Tracing
import Transfer

/// HTTP/1.1 to the engines (and to upstreams, over TLS for `https` URLs), on the daemon's own event loops, over
/// kept-alive connections.
///
/// A request costs no thread hand-off: it is written from the event loop that owns its connection, and the
/// reply comes back to the handler that awaits it. A caller running on one of the group's event loops (the
/// daemon's tasks do: see ``ModeldMain``) is given a connection on that loop where there is one. Idle
/// connections wait in a pool per engine address; a connection is reused only after its previous reply ended in
/// full with keep-alive. The reply body is read
/// at the consumer's pace (backpressure): the connection stops reading from the engine while
/// ``EngineReply/body`` holds a few chunks nobody has asked for yet.
final class EngineClient: Sendable {
    /// The client of the gateway and the LLM API, on the event loops the daemon's server runs on.
    static let shared = EngineClient(group: MultiThreadedEventLoopGroup.singleton)

    private let group: any EventLoopGroup
    private let idle = Mutex<[EngineAddress: [EngineConnection]]>([:])
    /// Idle connections kept per engine; more are closed when their reply ends.
    let maxIdlePerEngine: Int
    /// A reply that sends no byte for this long is abandoned and its connection closed.
    let stallTimeout: TimeAmount
    /// The longest reply read whole before it is sent on (``fetch(_:limit:onEnd:)``, the gateway's fast path).
    static let maxWholeReply = 256 << 20

    /// For `https` upstreams: the system's trust store (and the `ca_bundle`'s CAs, ``trust(caBundle:)``).
    private let tls: Mutex<NIOSSLContext?>

    init(group: any EventLoopGroup, maxIdlePerEngine: Int = 64, stallTimeout: TimeAmount = .seconds(600)) {
        self.group = group
        self.maxIdlePerEngine = maxIdlePerEngine
        self.stallTimeout = stallTimeout
        tls = Mutex(try? NIOSSLContext(configuration: .makeClientConfiguration()))
    }

    /// Trusts the CAs of a PEM bundle besides the system's for `https` upstreams (the `ca_bundle` setting, which
    /// the hubs use too): a provider behind a private CA.
    /// - Throws: when the bundle cannot be read as PEM certificates.
    func trust(caBundle: String) throws {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.additionalTrustRoots = [.file(caBundle)]
        let context = try NIOSSLContext(configuration: configuration)
        tls.withLock { $0 = context }
    }

    /// Sends `request` and returns once the reply's head has arrived; its body follows as it is read.
    /// - Parameter onEnd: called once when the exchange is over: the body ended, broke off or was dropped, or
    ///   no reply came (before this throws).
    /// - Throws: ``EngineClientError`` or a connection error when the engine did not answer.
    func send(_ request: EngineRequest, onEnd: @escaping @Sendable () -> Void = {}) async throws -> EngineReply {
        let (request, onEnd) = traced(request, onEnd: onEnd)
        return try await onConnection(request, onEnd: onEnd) { connection in
            try await withCheckedThrowingContinuation { continuation in
                connection.send(request, .streamed { continuation.resume(with: $0) }, client: self, onEnd: onEnd)
            }
        }
    }

    /// Sends `request` and returns its reply whole, for replies that are not streamed: head and body come back
    /// together from the event loop.
    /// - Parameter limit: a longer body fails with ``EngineClientError/replyTooLarge(limit:)``.
    /// - Throws: ``EngineClientError`` or a connection error when the engine did not answer, or broke off.
    func fetch(
        _ request: EngineRequest, limit: Int = maxWholeReply, onEnd: @escaping @Sendable () -> Void = {}
    ) async throws -> (head: Transfer.HTTPResponseHead, body: ByteBuffer) {
        let (request, onEnd) = traced(request, onEnd: onEnd)
        return try await onConnection(request, onEnd: onEnd) { connection in
            try await withCheckedThrowingContinuation { continuation in
                connection.send(
                    request, .whole({ continuation.resume(with: $0.map { (head: $0.0, body: $0.1) }) }, limit: limit), client: self, onEnd: onEnd)
            }
        }
    }

    /// With tracing on (a span in the task's context: the router's), the request with its span
    /// (``EngineCallSpan``), which ends with the exchange.
    private func traced(_ request: EngineRequest, onEnd: @escaping @Sendable () -> Void) -> (EngineRequest, @Sendable () -> Void) {
        guard request.span == nil, let parent = InstrumentationContext.current else { return (request, onEnd) }
        var request = request
        let span = EngineCallSpan(&request, parent: parent)
        request.span = span
        return (
            request,
            {
                onEnd()
                span.end()
            }
        )
    }

    /// Runs one exchange on a kept-alive connection, or a new one.
    private func onConnection<Result>(
        _ request: EngineRequest, onEnd: @Sendable () -> Void, _ body: (EngineConnection) async throws -> Result
    ) async throws -> Result {
        do {
            // A kept-alive connection the engine closed just before it was taken fails before any reply byte:
            // the request goes out again on the next one.
            while let connection = takeIdle(request.address) {
                do {
                    return try await body(connection)
                } catch EngineClientError.closedBeforeReply {
                    continue
                }
            }
            return try await body(try await connect(request.address, timeout: request.connectTimeout))
        } catch {
            request.span?.failed(error)
            onEnd()
            throw error
        }
    }

    /// An idle connection to `address`: with `loop`, only one on that loop (the fast path must not cross threads);
    /// else preferably one on the event loop this runs on (no thread hand-off).
    fileprivate func takeIdle(_ address: EngineAddress, on loop: (any EventLoop)? = nil) -> EngineConnection? {
        idle.withLock { idle in
            guard var connections = idle[address] else { return nil }
            defer { idle[address] = connections }
            connections.removeAll { !$0.channel.isActive }
            if let loop { return connections.lastIndex { $0.channel.eventLoop === loop }.map { connections.remove(at: $0) } }
            let local = connections.lastIndex { $0.channel.eventLoop.inEventLoop }
            return local.map { connections.remove(at: $0) } ?? connections.popLast()
        }
    }

    /// A connection whose reply ended with keep-alive waits for the next request, unless enough already do.
    fileprivate func release(_ connection: EngineConnection) {
        let kept = idle.withLock { idle in
            // Connections the engine closed meanwhile (it stopped, or timed them out) leave the pool here.
            idle[connection.address]?.removeAll { !$0.channel.isActive }
            guard connection.channel.isActive, idle[connection.address, default: []].count < maxIdlePerEngine else { return false }
            idle[connection.address, default: []].append(connection)
            return true
        }
        if !kept { connection.channel.close(promise: nil) }
    }

    private func connect(_ address: EngineAddress, timeout: TimeAmount) async throws -> EngineConnection {
        // On the event loop this runs on, if it is one of ours, so that its requests need no thread hand-off.
        let current = MultiThreadedEventLoopGroup.currentEventLoop.flatMap { current in group.makeIterator().first { $0 === current } }
        return try await connect(address, on: current ?? group.next(), timeout: timeout).get()
    }

    /// A new connection to `address` whose channel lives on `loop`.
    fileprivate func connect(
        _ address: EngineAddress, on loop: any EventLoop, timeout: TimeAmount = .seconds(30)
    ) -> EventLoopFuture<EngineConnection> {
        let stallTimeout = self.stallTimeout
        let tls = address.tls ? self.tls.withLock { $0 } : nil
        return ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if address.tls {
                        guard let tls else { throw EngineClientError.noTLS }
                        let isAddress = (try? SocketAddress(ipAddress: address.host, port: 0)) != nil
                        let handler = try NIOSSLClientHandler(context: tls, serverHostname: isAddress ? nil : address.host)
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: stallTimeout))
                    try channel.pipeline.syncOperations.addHandler(EngineReplyHandler())
                }
            }
            .connect(host: address.host, port: address.port)
            .flatMapThrowing { channel in
                let handler = try channel.pipeline.syncOperations.handler(type: EngineReplyHandler.self)
                return EngineConnection(address: address, channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop))
            }
    }

    /// Starts one exchange for a caller on an event loop of the group (the gateway's fast path,
    /// ``GatewayFastPath``): the request goes out on a connection on that loop, kept-alive or new, and the reply
    /// comes back to `sink` part by part, with no task, future or thread hand-off in between. A kept-alive connection the engine
    /// closed just before it was taken is retried on the next, as ``send(_:onEnd:)`` does.
    /// - Returns: the exchange, to pause, resume or cancel; `sink` hears of its end exactly once.
    func exchange(_ request: EngineRequest, on loop: any EventLoop, to sink: any EngineReplySink) -> EngineExchange {
        loop.preconditionInEventLoop()
        let exchange = EngineExchange(client: self, request: request, loop: loop, sink: sink)
        exchange.attempt()
        return exchange
    }

}

/// Receives an engine's reply part by part (``EngineClient/exchange(_:on:to:)``), on the event loop of the request.
protocol EngineReplySink: AnyObject {
    /// The reply's head (interim 1xx heads are skipped).
    func engineHead(_ head: NIOHTTP1.HTTPResponseHead)
    /// A piece of the body.
    /// - Returns: false to stop reading from the engine until ``EngineExchange/resume()``.
    func engineBody(_ chunk: ByteBuffer) -> Bool
    /// The body is complete: the exchange is over.
    func engineEnd()
    /// The exchange failed, before the head (no reply) or in the body: it is over.
    func engineFailed(_ error: any Error)
}

/// One exchange with an engine whose reply comes in parts, seen from the caller: it can resume the reply's
/// reading, or cancel it.
/// `@unchecked`: it lives on one event loop and is only used there (``EngineClient/exchange(_:on:to:)`` checks).
final class EngineExchange: @unchecked Sendable {
    private let client: EngineClient
    private let request: EngineRequest
    private let loop: any EventLoop
    /// Until the exchange ends (the sink owns this object, so the reference is dropped then).
    private var sink: (any EngineReplySink)?
    /// The connection's handler and the exchange's number on it, once sent.
    private var current: (handler: EngineReplyHandler, id: Int)?

    fileprivate init(client: EngineClient, request: EngineRequest, loop: any EventLoop, sink: any EngineReplySink) {
        self.client = client
        self.request = request
        self.loop = loop
        self.sink = sink
    }

    /// Reads the reply again after ``EngineReplySink/engineBody(_:)`` asked to pause.
    func resume() {
        guard let current else { return }
        current.handler.resumeReading(current.id)
    }

    /// Ends the exchange early (the client went away): the engine's connection is closed, which the engine
    /// sees as a cancelled request. The sink hears nothing more.
    func cancel() {
        sink = nil
        if let current { current.handler.consumerStopped(current.id) }
    }

    /// Sends the request on a kept-alive connection of this loop, else on a new one.
    fileprivate func attempt() {
        guard sink != nil else { return }
        if let connection = client.takeIdle(request.address, on: loop) {
            begin(on: connection, reused: true)
            return
        }
        client.connect(request.address, on: loop, timeout: request.connectTimeout).hop(to: loop).whenComplete { result in
            switch result {
            case .success(let connection): self.begin(on: connection, reused: false)
            case .failure(let error): self.failed(error, reused: false)
            }
        }
    }

    private func begin(on connection: EngineConnection, reused: Bool) {
        guard sink != nil else {
            client.release(connection)
            return
        }
        let handler = connection.handler.value
        let client = self.client
        let id = handler.begin(request, .inParts(self, reused: reused)) { reusable, _ in
            if reusable { client.release(connection) } else { connection.channel.close(promise: nil) }
        }
        if let id, sink != nil { current = (handler: handler, id: id) }
    }

    fileprivate func head(_ head: NIOHTTP1.HTTPResponseHead) { sink?.engineHead(head) }
    fileprivate func body(_ chunk: ByteBuffer) -> Bool { sink?.engineBody(chunk) ?? false }

    fileprivate func end() {
        let sink = self.sink
        self.sink = nil
        current = nil
        sink?.engineEnd()
    }

    fileprivate func failed(_ error: any Error, reused: Bool) {
        current = nil
        if reused, case EngineClientError.closedBeforeReply = error {
            attempt()
            return
        }
        request.span?.failed(error)
        let sink = self.sink
        self.sink = nil
        sink?.engineFailed(error)
    }
}

/// Where an engine (or an upstream) listens.
struct EngineAddress: Hashable, Sendable {
    var host: String
    var port: Int
    /// Over TLS (an `https` URL).
    var tls = false

    /// The `Host` header's value: the port only when it is not the scheme's own.
    var hostField: String {
        let name = host.contains(":") ? "[\(host)]" : host
        return port == (tls ? 443 : 80) ? name : "\(name):\(port)"
    }
}

/// A request to an engine: a JSON body posted to a path under the run's endpoint.
struct EngineRequest: Sendable {
    var address: EngineAddress
    /// The path with the endpoint's own path in front, if it has one.
    var path: String
    var method: HTTPMethod = .POST
    var headers: [(String, String)]
    var body: ByteBuffer
    /// How long the reply's head may take once the request is sent (an upstream's time-out); nil for no bound
    /// but the stall time-out.
    var firstByteTimeout: TimeAmount?
    /// The request's span when tracing is on; its `traceparent` is among `headers`.
    var span: EngineCallSpan?

    /// How long a new connection may take: the first-byte time-out when there is one.
    var connectTimeout: TimeAmount { firstByteTimeout ?? .seconds(30) }

    /// - Throws: ``EngineClientError/badEndpoint(_:)`` unless `endpoint` is an `http[s]://host[:port][/path]` URL.
    init(endpoint: String, path: String, method: HTTPMethod = .POST, headers: [(String, String)], body: ByteBuffer) throws {
        let (address, base) = try Self.parse(endpoint)
        self.address = address
        self.path = base + path
        self.method = method
        self.headers = headers
        self.body = body
    }
}

extension EngineRequest {
    /// Endpoints already parsed: a run's endpoint is the same string for every request.
    private static let parsed = Mutex<[String: (EngineAddress, String)]>([:])

    /// An endpoint's address and path (without a trailing `/`).
    private static func parse(_ endpoint: String) throws -> (EngineAddress, String) {
        if let known = parsed.withLock({ $0[endpoint] }) { return known }
        guard let url = URLComponents(string: endpoint), url.scheme == "http" || url.scheme == "https", let host = url.host, !host.isEmpty
        else {
            throw EngineClientError.badEndpoint(endpoint)
        }
        let base = url.path.hasSuffix("/") ? String(url.path.dropLast()) : url.path
        let tls = url.scheme == "https"
        let result = (EngineAddress(host: host, port: url.port ?? (tls ? 443 : 80), tls: tls), base)
        parsed.withLock { parsed in
            if parsed.count > 1024 { parsed.removeAll() }
            parsed[endpoint] = result
        }
        return result
    }
}

enum EngineClientError: Error, CustomStringConvertible {
    case badEndpoint(String)
    /// The connection closed before the reply's head: on a kept-alive connection the request is sent again.
    case closedBeforeReply
    /// The connection closed in the middle of the reply.
    case closedDuringReply
    /// No byte arrived for the stall timeout.
    case stalled
    /// A reply fetched whole was longer than the limit.
    case replyTooLarge(limit: Int)
    /// The reply's head did not come within the request's first-byte time-out.
    case noReplyInTime
    /// TLS could not be set up on this host.
    case noTLS

    var description: String {
        switch self {
        case .badEndpoint(let endpoint): "the endpoint \(endpoint) is not an http(s)://host[:port] URL"
        case .closedBeforeReply: "the engine closed the connection without replying"
        case .closedDuringReply: "the engine closed the connection in the middle of its reply"
        case .stalled: "the engine sent nothing for too long"
        case .replyTooLarge(let limit): "the engine's reply is larger than \(limit >> 20) MiB"
        case .noReplyInTime: "no reply within the time-out"
        case .noTLS: "TLS is not available"
        }
    }
}

/// An engine's reply under way: its head, and its body as it arrives.
struct EngineReply: Sendable {
    let head: Transfer.HTTPResponseHead
    let body: EngineBody
    fileprivate let stop: @Sendable () -> Void

    var status: Int { head.status }

    /// Stops the reply (the client went away, or the caller has read enough): the connection is closed, which
    /// the engine sees as a cancelled request.
    func cancel() { stop() }
}

typealias EngineBody = NIOThrowingAsyncSequenceProducer<
    ByteBuffer, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, EngineBodyDemand
>

/// One kept-alive connection to an engine; one request at a time.
private struct EngineConnection: Sendable {
    let address: EngineAddress
    let channel: any Channel
    let handler: NIOLoopBound<EngineReplyHandler>

    /// Sends `request`; the handler delivers the reply as `delivery` says.
    /// - Parameter onEnd: called when a reply that arrived ends; when none does, the delivery fails instead.
    func send(_ request: EngineRequest, _ delivery: EngineReplyHandler.Delivery, client: EngineClient, onEnd: @escaping @Sendable () -> Void) {
        let handler = self.handler
        let connection = self
        channel.eventLoop.execute {
            handler.value.begin(request, delivery) { reusable, answered in
                if reusable { client.release(connection) } else { connection.channel.close(promise: nil) }
                if answered { onEnd() }
            }
        }
    }
}

/// Tells the connection when the consumer wants more of the body, and when it stopped reading.
struct EngineBodyDemand: NIOAsyncSequenceProducerDelegate {
    fileprivate let handler: NIOLoopBound<EngineReplyHandler>
    fileprivate let exchange: Int

    func produceMore() {
        let handler = self.handler, exchange = self.exchange
        handler.eventLoop.execute { handler.value.resumeReading(exchange) }
    }

    func didTerminate() {
        let handler = self.handler, exchange = self.exchange
        handler.eventLoop.execute { handler.value.consumerStopped(exchange) }
    }
}

/// The end of a connection's pipeline: writes each request and delivers its reply, as a head and a body stream
/// or whole.
private final class EngineReplyHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    /// How a reply reaches the caller: each callback is called once, on the event loop (the caller's
    /// continuation, resumed without a future in between).
    enum Delivery {
        /// The head when it arrives, the body as a stream read at the caller's pace.
        case streamed(@Sendable (Result<EngineReply, any Error>) -> Void)
        /// Head and body together at the end, the body no larger than the limit.
        case whole(@Sendable (Result<(Transfer.HTTPResponseHead, ByteBuffer), any Error>) -> Void, limit: Int)
        /// Head, body pieces and end as they arrive, to an exchange on this event loop (the gateway's fast path).
        /// - Parameter reused: the connection was kept alive from an earlier exchange.
        case inParts(EngineExchange, reused: Bool)

        func fail(_ error: any Error) {
            switch self {
            case .streamed(let deliver): deliver(.failure(error))
            case .whole(let deliver, _): deliver(.failure(error))
            case .inParts(let receiver, let reused): receiver.failed(error, reused: reused)
            }
        }
    }

    /// The request in flight.
    private struct Exchange {
        let id: Int
        /// Until the reply is handed over (holding it longer would keep a dropped reply's body alive).
        var delivery: Delivery?
        /// The stream of a streamed reply.
        var source: EngineBody.Source?
        /// A streamed body until the head arrives and the reply takes it: a reply dropped unread then ends the exchange.
        var body: EngineBody?
        /// Where a reply delivered in parts goes, once its head has.
        var receiver: EngineExchange?
        /// A whole reply while it arrives.
        var head: Transfer.HTTPResponseHead?
        var collected: ByteBuffer?
        /// Called once at the end: whether the connection can serve another request, and whether the reply was
        /// handed over (else its delivery failed).
        let finished: (_ reusable: Bool, _ answered: Bool) -> Void
        var headArrived = false
        var keepAlive = true
        /// Fails the exchange when the head does not come in time (``EngineRequest/firstByteTimeout``).
        var headTimer: Scheduled<Void>?
        /// The request's span, told of the reply's head, its first byte and a failure.
        let span: EngineCallSpan?
    }

    private var context: ChannelHandlerContext?
    private var exchange: Exchange?
    private var exchanges = 0
    /// False while the consumer has enough unread chunks: reads from the engine wait.
    private var reading = true
    private var readPending = false

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// - Returns: the exchange's number on this connection, or nil when the connection could not take it (its
    ///   delivery has failed).
    @discardableResult
    func begin(_ request: EngineRequest, _ delivery: Delivery, finished: @escaping (Bool, Bool) -> Void) -> Int? {
        guard let context, context.channel.isActive, exchange == nil else {
            delivery.fail(EngineClientError.closedBeforeReply)
            return nil
        }
        exchanges += 1
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        var current = Exchange(id: exchanges, delivery: delivery, finished: finished, span: request.span)
        if case .streamed = delivery {
            let sequence = EngineBody.makeSequence(
                backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8), finishOnDeinit: true,
                delegate: EngineBodyDemand(handler: bound, exchange: exchanges))
            current.source = sequence.source
            current.body = sequence.sequence
        }
        exchange = current

        var head = HTTPRequestHead(version: .http1_1, method: request.method, uri: request.path)
        head.headers.add(name: "Host", value: request.address.hostField)
        for (name, value) in request.headers { head.headers.add(name: name, value: value) }
        head.headers.add(name: "Content-Length", value: String(request.body.readableBytes))
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if request.body.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(request.body))), promise: nil)
        }
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        written.futureResult.whenFailure { [id = exchanges] error in
            bound.value.fail(id, error)
        }
        if let timeout = request.firstByteTimeout {
            exchange?.headTimer = context.eventLoop.scheduleTask(in: timeout) { [id = exchanges] in
                guard bound.value.exchange?.id == id, bound.value.exchange?.headArrived == false else { return }
                bound.value.fail(id, EngineClientError.noReplyInTime)
            }
        }
        readAgain()
        return current.id
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard var current = exchange else { return }  // Nothing asked: an engine's stray bytes are dropped.
        switch unwrapInboundIn(data) {
        case .head(let head):
            // 1xx heads (100 Continue) come before the real one.
            guard head.status.code >= 200, !current.headArrived else { return }
            current.headArrived = true
            current.headTimer?.cancel()
            current.keepAlive = head.isKeepAlive
            current.span?.replied(status: Int(head.status.code))
            if case .inParts(let receiver, _) = current.delivery {
                current.delivery = nil
                current.receiver = receiver
                exchange = current
                receiver.head(head)
                return
            }
            var headers: [String: String] = [:]
            for field in head.headers { headers[field.name.lowercased()] = field.value }
            let replyHead = Transfer.HTTPResponseHead(status: Int(head.status.code), headers: headers)
            if case .streamed(let deliver) = current.delivery, let body = current.body {
                current.delivery = nil
                current.body = nil
                exchange = current
                let id = current.id
                let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
                deliver(.success(EngineReply(head: replyHead, body: body, stop: { bound.eventLoop.execute { bound.value.consumerStopped(id) } })))
            } else {
                current.head = replyHead
                exchange = current
            }
        case .body(var chunk):
            current.span?.received()
            if let receiver = current.receiver {
                if !receiver.body(chunk) { reading = false }
            } else if let source = current.source {
                if source.yield(chunk) == .stopProducing { reading = false }
            } else if case .whole(_, let limit) = current.delivery {
                if current.collected == nil {
                    current.collected = chunk
                } else {
                    current.collected!.writeBuffer(&chunk)
                }
                exchange = current
                if current.collected!.readableBytes > limit { fail(current.id, EngineClientError.replyTooLarge(limit: limit)) }
            }
        case .end:
            guard current.headArrived else { return }  // The end of a 1xx reply.
            exchange = nil
            // An idle connection keeps reading, so that it notices the engine closing it.
            readAgain()
            if let receiver = current.receiver {
                // The connection goes back first: the fast path may send its next request at once.
                current.finished(current.keepAlive, true)
                receiver.end()
                return
            }
            current.source?.finish()
            if case .whole(let deliver, _) = current.delivery, let head = current.head {
                deliver(.success((head, current.collected ?? ByteBuffer())))
            }
            current.finished(current.keepAlive, true)
        }
    }

    func read(context: ChannelHandlerContext) {
        if reading {
            context.read()
        } else {
            readPending = true
        }
    }

    func resumeReading(_ id: Int) {
        guard exchange?.id == id, !reading else { return }
        readAgain()
    }

    /// Reads again, and issues the read the channel asked for meanwhile.
    private func readAgain() {
        reading = true
        if readPending, let context {
            readPending = false
            context.read()
        }
    }

    /// The consumer dropped the body before its end (or cancelled the reply): the engine is told by closing.
    func consumerStopped(_ id: Int) {
        guard exchange?.id == id else { return }
        fail(id, CancellationError())
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case IdleStateHandler.IdleStateEvent.read = event {
            if let exchange { fail(exchange.id, EngineClientError.stalled) } else { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let exchange {
            fail(exchange.id, exchange.headArrived ? EngineClientError.closedDuringReply : EngineClientError.closedBeforeReply)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let exchange { fail(exchange.id, error) }
        context.close(promise: nil)
    }

    /// Ends the exchange with `error` and closes the connection: a reply not yet handed over fails, a streamed
    /// body that was ends with the error.
    private func fail(_ id: Int, _ error: any Error) {
        guard let current = exchange, current.id == id else { return }
        exchange = nil
        current.headTimer?.cancel()
        // A kept-alive connection closed before the reply is retried on another (the caller hears of it if not).
        if case EngineClientError.closedBeforeReply = error {} else { current.span?.failed(error) }
        current.finished(false, current.delivery == nil)
        current.delivery?.fail(error)
        current.receiver?.failed(error, reused: false)
        if current.delivery == nil {
            current.source?.finish(error)
        } else {
            current.source?.finish()
        }
    }
}
