import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1

/// The limits every HTTP connection of a server is held to (the daemon's listeners and `modeld engine`).
struct ConnectionLimits: Sendable {
    /// How long a connection may stay open with no request in progress (before its first request and between
    /// requests). A response being sent, however long it streams, is not idle time.
    var idleTimeout: Duration
    /// How long a request's head (request line and headers) may take to arrive once its first byte has.
    var headerTimeout: Duration
    /// The longest pause between two reads of a request's body; past the first such span of pauses, a body must
    /// also keep up ``BodyPace/minimumRate`` on average.
    var bodyTimeout: Duration
    /// The largest request body, but for ``streamedBodyPaths``: a larger `Content-Length` is answered 413 before
    /// any of the body is read, a longer chunked body ends the connection when it passes the limit.
    var maxBodySize: Int
    /// Paths (`POST` only) whose body is a stream that its route bounds itself (archive imports).
    var streamedBodyPaths: Set<String> = []
    /// The body of an error the guard answers itself: status code, message, and the request's path (nil when the
    /// head could not be read), in the server's own error format.
    var errorBody: @Sendable (_ code: Int, _ message: String, _ path: Substring?) -> ByteBuffer

    /// The largest request line and header block; larger ones are answered 431.
    static let maxHeaderSize = 64 << 10
    /// The most header fields in one request.
    static let maxHeaderFields = 500

    /// Hummingbird's HTTP/1 channel configuration with the header limits; its own idle timeout stays off
    /// (``ConnectionGuard`` keeps time, requests on the fast path included).
    static var channelConfiguration: HTTP1Channel.Configuration {
        .init(
            httpDecoderConfiguration: .init(
                maxHeaderFieldSize: maxHeaderSize, maxHeaderListSize: maxHeaderSize, maxHeaderFieldCount: maxHeaderFields))
    }
}

/// Hummingbird's HTTP/1 channel with a ``ConnectionGuard`` on every connection.
struct GuardedHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value

    let http: HTTP1Channel
    let limits: ConnectionLimits

    init(responder: @escaping HTTPChannelHandler.Responder, limits: ConnectionLimits) {
        http = HTTP1Channel(responder: responder, configuration: ConnectionLimits.channelConfiguration)
        self.limits = limits
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let limits = self.limits
        return http.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let operations = channel.pipeline.syncOperations
            let connectionGuard = ConnectionGuard(limits: limits)
            try operations.addHandler(ConnectionGuard.ByteWatch(owner: connectionGuard), position: .first)
            let conversion = try operations.handler(type: HTTP1ToHTTPServerCodec.self)
            try operations.addHandler(connectionGuard, position: .before(conversion))
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await http.handle(value: value, logger: logger)
    }
}

/// Keeps one connection within its ``ConnectionLimits``, right after the HTTP/1 decoder, where it sees every
/// request and every response (the gateway's fast path's too): closes the connection when it stays idle, when a
/// request's head or the next piece of its body is late (slowloris, a `Content-Length` larger than the body),
/// answers 413 to a declared body over the limit and 431 to an over-large header block, and ends a connection
/// whose request body is still arriving when its response is complete (an endless chunked body is not read on).
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// Where the connection is in reading a request.
    private enum Reading {
        /// Between requests: nothing of the next one has arrived.
        case none
        /// Bytes of a head arrived, the first at `since`; the decoder has not produced it yet.
        case head(since: NIODeadline)
        /// The body is arriving.
        case body(Body)
        /// A request refused here: what is left of the connection is dropped until it closes.
        case refused
    }

    /// A request body as it arrives.
    private struct Body {
        /// Whether ``ConnectionLimits/maxBodySize`` applies.
        let limited: Bool
        var pace = BodyPace()
    }

    private let limits: ConnectionLimits
    private var context: ChannelHandlerContext?
    private var reading = Reading.none
    /// The server asked for more bytes and has had none since.
    private var readPending = false
    /// Requests whose response has not been written in full.
    private var owed = 0
    /// When the connection last had nothing in progress.
    private var idleSince = NIODeadline.now()
    /// The response being written ends the connection.
    private var closeAfterResponse = false
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?
    /// The client closed its sending side.
    private var inputClosed = false
    /// Who to tell when the client goes away (``ClientDeparture``).
    private var departureWatchers: [@Sendable () -> Void] = []

    init(limits: ConnectionLimits) {
        self.limits = limits
    }

    /// In front of the HTTP decoder: tells the guard that bytes arrived, so that a head's time starts with its
    /// first byte and a body's pause ends with any byte.
    final class ByteWatch: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer
        private let owner: ConnectionGuard

        init(owner: ConnectionGuard) { self.owner = owner }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            owner.bytesArrived()
            context.fireChannelRead(data)
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        idleSince = .now()
        arm()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        departed()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed? = event as? ChannelEvent {
            inputClosed = true
            departed()
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Calls `onGone` when the client closes its sending side or the connection ends (at once when it has) before
    /// the response being written ends.
    fileprivate func watchDeparture(_ onGone: @escaping @Sendable () -> Void) {
        if inputClosed || context?.channel.isActive != true { onGone() } else { departureWatchers.append(onGone) }
    }

    private func departed() {
        let watchers = departureWatchers
        departureWatchers = []
        for watcher in watchers { watcher() }
    }

    fileprivate func bytesArrived() {
        readPending = false
        switch reading {
        case .none:
            reading = .head(since: .now())
        case .body(var body):
            body.pace.arrived()
            reading = .body(body)
        case .head, .refused:
            return
        }
        arm()
    }

    func read(context: ChannelHandlerContext) {
        if !readPending, case .body(var body) = reading {
            body.pace.readRequested()
            reading = .body(body)
        }
        readPending = true
        arm()
        context.read()
    }

    // MARK: Requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .refused = reading { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            owed += 1
            let limited = !(head.method == .POST && limits.streamedBodyPaths.contains(String(Self.path(of: head.uri))))
            if limited, let length = head.headers.first(name: "content-length").flatMap({ Int($0) }), length > limits.maxBodySize {
                refuse(
                    .payloadTooLarge, path: Self.path(of: head.uri),
                    "the request body (\(length) bytes) is larger than the limit of \(limits.maxBodySize) bytes (max_body_size)",
                    context: context)
                return
            }
            reading = .body(Body(limited: limited))
        case .body(let chunk):
            guard case .body(var body) = reading else { break }
            body.pace.bytes += chunk.readableBytes
            if body.limited, body.pace.bytes > limits.maxBodySize {
                // The router has the request and may be answering it: the connection ends instead.
                reading = .refused
                context.close(promise: nil)
                return
            }
            reading = .body(body)
        case .end:
            reading = .none
        }
        arm()
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let parserError = error as? HTTPParserError, parserError == .headerOverflow {
            owed += 1
            refuse(
                .requestHeaderFieldsTooLarge, path: nil, "the request's headers are larger than \(ConnectionLimits.maxHeaderSize >> 10) KiB",
                context: context)
            return
        }
        context.fireErrorCaught(error)
    }

    /// Answers the request just read with an error and closes the connection, without the router; only when no
    /// earlier response is owed (else the connection just closes: answers must keep the requests' order).
    private func refuse(_ status: HTTPResponseStatus, path: Substring?, _ message: String, context: ChannelHandlerContext) {
        reading = .refused
        owed -= 1
        guard owed == 0 else {
            context.close(promise: nil)
            return
        }
        let body = limits.errorBody(Int(status.code), message, path)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
        headers.add(name: "Content-Length", value: "\(body.readableBytes)")
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    private static func path(of uri: String) -> Substring {
        uri.firstIndex(of: "?").map { uri[..<$0] } ?? uri[...]
    }

    // MARK: Responses

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where head.status.code >= 200:
            // A response to the request whose body is still arriving (the only one owed: with more, it answers an
            // earlier, pipelined one): the rest is not read, the connection ends.
            if case .body = reading, owed == 1 { closeAfterResponse = true }
            if closeAfterResponse {
                head.headers.replaceOrAdd(name: "Connection", value: "close")
                context.write(wrapOutboundOut(.head(head)), promise: promise)
                return
            }
        case .end:
            owed -= 1
            departureWatchers = []
            if closeAfterResponse {
                let written = promise ?? context.eventLoop.makePromise()
                context.writeAndFlush(data, promise: written)
                written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
                return
            }
            if owed == 0 {
                switch reading {
                case .none: idleSince = .now()
                // The next head's time starts now: until the response was out, the server was not reading it.
                case .head: reading = .head(since: .now())
                default: break
                }
                arm()
            }
        default:
            break
        }
        context.write(data, promise: promise)
    }

    // MARK: Time

    /// When the connection is closed unless something happens first; nil while a response is owed and nothing
    /// is being read (a long stream is not cut), and while the server holds back from reading a body.
    private var deadline: NIODeadline? {
        switch reading {
        case .head(let since):
            return owed > 0 ? nil : since + TimeAmount(limits.headerTimeout)
        case .body(let body):
            return readPending ? body.pace.deadline(limits) : nil
        case .refused:
            return nil
        case .none:
            return owed > 0 ? nil : idleSince + TimeAmount(limits.idleTimeout)
        }
    }

    /// Schedules the check for the current deadline, unless one is due no later (it re-arms when it finds the
    /// deadline moved): reads push deadlines back without touching the timer.
    private func arm() {
        guard let context, let deadline else { return }
        if let timerDeadline, timerDeadline <= deadline { return }
        timer?.cancel()
        timerDeadline = deadline
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            timer = nil
            timerDeadline = nil
            guard let due = self.deadline else { return }
            if due <= .now() {
                context.close(promise: nil)
            } else {
                arm()
            }
        }
    }
}

/// The pace of a request body as it arrives, for ``ConnectionGuard`` and ``HTTP2StreamGuard``. Only time when the
/// server wants to read counts against the client: while the server holds back (its reader is busy, backpressure),
/// no read is outstanding and nothing is timed.
struct BodyPace {
    /// The average rate a body must keep up once its first ``ConnectionLimits/bodyTimeout`` is spent (bytes per
    /// second of pauses): a body trickled a byte a time ends even when no single pause is long.
    static let minimumRate: Int64 = 1024

    var bytes = 0
    /// When the current pause began: the last bytes, or the server's read request after holding back.
    private var pauseStart = NIODeadline.now()
    /// The time the client has spent in pauses so far.
    private var waited = TimeAmount.zero

    /// Bytes arrived: the pause until now counts against the client.
    mutating func arrived() {
        let now = NIODeadline.now()
        waited = waited + (now - pauseStart)
        pauseStart = now
    }

    /// The server asks for more after holding back: the pause starts now.
    mutating func readRequested() {
        pauseStart = .now()
    }

    /// When the body is late, while the server waits for it: a pause longer than the body timeout, or the pauses
    /// past the first body timeout longer than the bytes so far earn at ``minimumRate``.
    func deadline(_ limits: ConnectionLimits) -> NIODeadline {
        let timeout = TimeAmount(limits.bodyTimeout)
        let earned = timeout + .seconds(min(Int64(bytes) / Self.minimumRate, 1 << 32))
        return pauseStart + min(timeout, earned - waited)
    }
}

/// Tells a streamed reply that its client went away while it was being written: the connection (or the HTTP/2
/// stream) closed, or, over HTTP/1, the client closed its sending side. The last is read as proxies read it, and as
/// the gateway's fast path does: a client that stops waiting (a killed process, a closed tab) closes its socket, and
/// the kernel says no more than that. Without this a reply would learn of it only when a write failed, which is
/// late (the first write after the close still succeeds) or never (a reply with nothing to write for a while).
enum ClientDeparture {
    /// Why a reply ended: its client went away.
    struct Gone: Error, CustomStringConvertible {
        var description: String { "the client went away" }
    }

    /// Calls `onGone` once, on the channel's event loop, when the client of `channel` goes away before the response
    /// being written has ended.
    static func watch(_ channel: any Channel, onGone: @escaping @Sendable () -> Void) {
        channel.eventLoop.execute {
            // HTTP/1 connections have a guard, which sees the half-close; an HTTP/2 stream's end is its close.
            if let connectionGuard = try? channel.pipeline.syncOperations.handler(type: ConnectionGuard.self) {
                connectionGuard.watchDeparture(onGone)
            } else {
                channel.closeFuture.whenComplete { _ in onGone() }
            }
        }
    }
}
