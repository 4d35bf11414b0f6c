import NIOCore
import NIOHTTP2
import NIOHTTPTypes

/// Keeps an HTTP/2 connection within its ``ConnectionLimits``, as ``ConnectionGuard`` keeps an HTTP/1 one: closes
/// it when it has had no open stream for the idle timeout (a `GOAWAY` first, then the connection, whether or not the
/// client answers), and when a header block (a `HEADERS` frame and its `CONTINUATION`s, or the connection preface,
/// or a frame's 9-byte header) is still incomplete a header timeout after its first byte: a slowloris that trickles
/// headers holds nothing, however many streams it has open. Each stream's body is timed by its ``HTTP2StreamGuard``.
///
/// It sits after the HTTP/2 handler, where it sees streams open and close; its ``FrameWatch`` sits before it, where it
/// sees the frames' bytes arrive.
final class HTTP2ConnectionGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private let limits: ConnectionLimits
    private var context: ChannelHandlerContext?
    private var openStreams = 0
    /// The highest stream id the client opened, for the `GOAWAY`.
    private var lastStream = HTTP2StreamID.rootStream
    private var idleSince = NIODeadline.now()
    /// When the header bytes still incomplete began to arrive; nil when none are.
    private var headerSince: NIODeadline?
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?

    init(limits: ConnectionLimits) {
        self.limits = limits
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
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let created = event as? NIOHTTP2StreamCreatedEvent {
            openStreams += 1
            lastStream = max(lastStream, created.streamID)
            arm()
        } else if event is StreamClosedEvent {
            openStreams = max(openStreams - 1, 0)
            if openStreams == 0 { idleSince = .now() }
            arm()
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Header bytes began to arrive (`true`) or are complete (`false`).
    fileprivate func headerArriving(_ arriving: Bool) {
        if arriving {
            if headerSince == nil { headerSince = .now() }
        } else {
            headerSince = nil
        }
        arm()
    }

    /// When the connection is closed unless something happens first.
    private var deadline: NIODeadline? {
        let header = headerSince.map { $0 + TimeAmount(limits.headerTimeout) }
        let idle = openStreams == 0 ? idleSince + TimeAmount(limits.idleTimeout) : nil
        return [header, idle].compactMap { $0 }.min()
    }

    /// Schedules the check for the current deadline, unless one is due no later (it re-arms when it finds the
    /// deadline moved): frames arriving push deadlines back without touching the timer.
    private func arm() {
        guard let context, let deadline else { return }
        if let timerDeadline, timerDeadline <= deadline { return }
        timer?.cancel()
        timerDeadline = deadline
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            timer = nil
            timerDeadline = nil
            guard let due = self.deadline else { return }
            guard due <= .now() else { return arm() }
            let goAway = HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: lastStream, errorCode: .noError, opaqueData: nil))
            context.writeAndFlush(wrapOutboundOut(goAway), promise: nil)
            context.close(promise: nil)
        }
    }

    /// Before the HTTP/2 handler: follows the frames in the connection's bytes and tells the guard when header
    /// bytes begin to arrive and when they are complete.
    final class FrameWatch: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer

        /// The client's connection preface: `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
        private static let prefaceLength = 24
        private static let headers: UInt8 = 0x1
        private static let continuation: UInt8 = 0x9
        private static let endHeaders: UInt8 = 0x4

        private let owner: HTTP2ConnectionGuard
        private var prefaceLeft = FrameWatch.prefaceLength
        /// The bytes of the frame header being read.
        private var frameHeader: [UInt8] = []
        private var payloadLeft = 0
        /// The frame whose payload is being read ends a header block.
        private var endsBlock = false
        /// A header block is open: its `HEADERS` came without `END_HEADERS`.
        private var inBlock = false

        init(owner: HTTP2ConnectionGuard) { self.owner = owner }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = unwrapInboundIn(data).readableBytesView[...]
            while !bytes.isEmpty {
                if prefaceLeft > 0 {
                    if prefaceLeft == Self.prefaceLength { owner.headerArriving(true) }
                    let count = min(prefaceLeft, bytes.count)
                    prefaceLeft -= count
                    bytes = bytes.dropFirst(count)
                    if prefaceLeft == 0 { owner.headerArriving(false) }
                } else if payloadLeft > 0 {
                    let count = min(payloadLeft, bytes.count)
                    payloadLeft -= count
                    bytes = bytes.dropFirst(count)
                    if payloadLeft == 0 { frameRead() }
                } else {
                    if frameHeader.isEmpty, !inBlock { owner.headerArriving(true) }
                    let count = min(9 - frameHeader.count, bytes.count)
                    frameHeader += bytes.prefix(count)
                    bytes = bytes.dropFirst(count)
                    if frameHeader.count == 9 { frameHeaderRead() }
                }
            }
            context.fireChannelRead(data)
        }

        private func frameHeaderRead() {
            payloadLeft = Int(frameHeader[0]) << 16 | Int(frameHeader[1]) << 8 | Int(frameHeader[2])
            let (type, flags) = (frameHeader[3], frameHeader[4])
            frameHeader = []
            let headerFrame = type == Self.headers || (type == Self.continuation && inBlock)
            endsBlock = headerFrame && flags & Self.endHeaders != 0
            inBlock = headerFrame && !endsBlock
            // A frame of another kind is timed no further: its payload is the stream's (a body, timed by the
            // stream's guard) or the connection's.
            if !headerFrame { owner.headerArriving(false) }
            if payloadLeft == 0 { frameRead() }
        }

        private func frameRead() {
            if endsBlock {
                endsBlock = false
                owner.headerArriving(false)
            }
        }
    }
}

/// Keeps one HTTP/2 stream's request body within the ``ConnectionLimits`` (``BodyPace``, as ``ConnectionGuard``
/// does for HTTP/1): a body late while the server waits for it resets the stream, and so does a body still
/// arriving when the response is complete (it is not read on). The connection and its other streams go on.
final class HTTP2StreamGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let limits: ConnectionLimits
    private var context: ChannelHandlerContext?
    /// The body's pace while it arrives; nil before the head and after the end.
    private var body: BodyPace?
    /// The server asked for more bytes and has had none since.
    private var readPending = false
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?

    init(limits: ConnectionLimits) {
        self.limits = limits
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        readPending = false
        switch unwrapInboundIn(data) {
        case .head:
            body = BodyPace()
        case .body(let chunk):
            body?.bytes += chunk.readableBytes
            body?.arrived()
        case .end:
            body = nil
        }
        arm()
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        if !readPending { body?.readRequested() }
        readPending = true
        arm()
        context.read()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .end = unwrapOutboundIn(data), body != nil else {
            context.write(data, promise: promise)
            return
        }
        // The response is complete and the body still arriving: once the response is out, the stream is reset.
        let written = promise ?? context.eventLoop.makePromise()
        context.writeAndFlush(data, promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    /// As ``HTTP2ConnectionGuard``'s: a check at the deadline, re-armed when it finds the deadline moved.
    private func arm() {
        guard let context, readPending, let deadline = body?.deadline(limits) else { return }
        if let timerDeadline, timerDeadline <= deadline { return }
        timer?.cancel()
        timerDeadline = deadline
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            timer = nil
            timerDeadline = nil
            guard readPending, let due = body?.deadline(limits) else { return }
            if due <= .now() { context.close(promise: nil) } else { arm() }
        }
    }
}
