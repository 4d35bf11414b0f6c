import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOHTTP1

/// The daemon listener's connections: HTTP/1 with a ``ConnectionGuard`` and the gateway's fast path, and the upgrade
/// of a connection's first request to the WebSocket chat (``ChatSocket``).
///
/// The pipeline of a connection is, from the socket: the guard's byte watch, the HTTP/1 encoder and decoder, the
/// ``ConnectionGuard``, the ``GatewayFastPath`` (both read and write NIOHTTP1's parts), then the upgrade handler,
/// which on the first request that is not an upgrade gives way to the conversion to HTTP types and the router.
/// When the chat accepts an upgrade, the guard and the fast path leave the pipeline before the `101` is sent: from
/// then on the bytes are WebSocket frames, bounded by the chat's own limits (message size, frame rate, pings).
struct DaemonHTTPChannel: ServerChildChannel {
    typealias Value = HTTP1WebSocketUpgradeChannel.Value
    private typealias Upgrade = NIOTypedHTTPServerUpgradeHandler<HTTP1WebSocketUpgradeChannel.UpgradeResult>

    let channel: HTTP1WebSocketUpgradeChannel
    let limits: ConnectionLimits
    let gateway: GatewayFastPathShared

    /// - Parameters:
    ///   - chat: the WebSocket chat; nil refuses every upgrade (the request is answered as HTTP).
    ///   - gateway: what each connection's ``GatewayFastPath`` shares.
    init(responder: @escaping HTTPChannelHandler.Responder, limits: ConnectionLimits, chat: ChatSocket?, gateway: GatewayFastPathShared) {
        self.limits = limits
        self.gateway = gateway
        channel = HTTP1WebSocketUpgradeChannel(
            responder: responder, configuration: .init(http1: ConnectionLimits.channelConfiguration, ws: ChatSocket.configuration)
        ) { head, channel, _ in
            guard let chat, let handler = try await chat.upgrade(head, isControlSocket: channel.localAddress?.protocol == .unix) else {
                return .dontUpgrade
            }
            try await channel.eventLoop.submit {
                let operations = channel.pipeline.syncOperations
                operations.removeHandler(try operations.handler(type: ConnectionGuard.ByteWatch.self), promise: nil)
                operations.removeHandler(try operations.handler(type: ConnectionGuard.self), promise: nil)
                operations.removeHandler(try operations.handler(type: GatewayFastPath.self), promise: nil)
            }.get()
            return .upgrade([:], handler)
        }
    }

    /// Sets up a connection's pipeline.
    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let (limits, gateway) = (self.limits, self.gateway)
        return self.channel.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let operations = channel.pipeline.syncOperations
            let connectionGuard = ConnectionGuard(limits: limits)
            try operations.addHandler(ConnectionGuard.ByteWatch(owner: connectionGuard), position: .first)
            let upgrade = try operations.handler(type: Upgrade.self)
            try operations.addHandler(connectionGuard, position: .before(upgrade))
            let fastPath = GatewayFastPath(shared: gateway, isControlSocket: channel.localAddress?.protocol == .unix)
            try operations.addHandler(fastPath, position: .before(upgrade))
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await channel.handle(value: value, logger: logger)
    }
}
