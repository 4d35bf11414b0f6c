import Foundation
import HummingbirdCore
import HummingbirdHTTP2
import Logging
import NIOCore
import NIOHTTP2
import NIOSSL
import NIOTLS
import ServiceLifecycle
import Synchronization
import UnixSignals

/// The certificate and key the TCP listeners serve HTTPS with (`tls_cert`, `tls_key`; docs/tls.md), loaded at
/// start-up and again on SIGHUP: each connection takes the context that is current when it opens, so a reload
/// reaches new connections and leaves open ones as they are.
final class ServerTLS: Sendable {
    let certificatePath: String
    let keyPath: String
    private let current: Mutex<NIOSSLContext>

    /// The protocols offered by ALPN, preferred first.
    static let applicationProtocols = ["h2", "http/1.1"]

    /// - Throws: ``ConfigurationError`` naming the file that does not hold what it should.
    init(certificate: String, key: String) throws {
        certificatePath = certificate
        keyPath = key
        current = Mutex(try Self.load(certificate: certificate, key: key))
    }

    /// The configuration's TLS, nil when it serves plain HTTP.
    static func load(_ configuration: DaemonConfiguration) throws -> ServerTLS? {
        guard let certificate = configuration.tlsCert, let key = configuration.tlsKey else { return nil }
        return try ServerTLS(certificate: certificate, key: key)
    }

    /// The context new connections get.
    var context: NIOSSLContext { current.withLock { $0 } }

    /// Reads both files again; when they do not load, the context being served stays.
    func reload() throws {
        let context = try Self.load(certificate: certificatePath, key: keyPath)
        current.withLock { $0 = context }
    }

    private static func load(certificate: String, key: String) throws -> NIOSSLContext {
        let chain = (try? NIOSSLCertificate.fromPEMFile(certificate)) ?? []
        guard !chain.isEmpty else {
            throw ConfigurationError(key: "tls_cert", problem: "file \(certificate) holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        }
        let privateKey: NIOSSLPrivateKey
        do {
            privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
        } catch {
            throw ConfigurationError(
                key: "tls_key", problem: "file \(key) holds no unencrypted PEM private key (-----BEGIN PRIVATE KEY-----)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
        configuration.applicationProtocols = applicationProtocols
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw ConfigurationError(key: "tls_key", problem: "file \(key) is not the private key of the certificate in \(certificate)")
        }
    }
}

/// HTTPS on one connection: TLS with the ``ServerTLS`` context current when it opens, then HTTP/2 or HTTP/1.1
/// as ALPN chose (HTTP/1.1 when the client names neither).
///
/// HTTP/1.1 gets the listener's own channel, connection guard and the gateway's fast path included. HTTP/2
/// streams go to the router (its routes bound their bodies) under an ``HTTP2ConnectionGuard`` (idle and header
/// time-outs) and each under an ``HTTP2StreamGuard`` (its body's pace). A client that
/// sends plain HTTP is told so (``PlainHTTPRefusal``), and a handshake not done within the header timeout of
/// the connection's opening ends it.
struct SecureHTTPChannel<HTTP1: ServerChildChannel>: ServerChildChannel {
    enum Negotiated: Sendable {
        case http1(HTTP1.Value)
        case http2(HTTP2Channel.Value)
    }

    struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<Negotiated>
        let channel: any Channel
    }

    let tls: ServerTLS
    let http1: HTTP1
    let http2: HTTP2Channel
    let limits: ConnectionLimits

    init(tls: ServerTLS, http1: HTTP1, responder: @escaping HTTPChannelHandler.Responder, limits: ConnectionLimits) {
        self.tls = tls
        self.http1 = http1
        var streams = ConnectionLimits.channelConfiguration
        streams.additionalChannelHandlers = { [HTTP2StreamGuard(limits: limits)] }
        // The connection's idle time is the guard's to keep (HTTP2ConnectionGuard): it closes even when the client
        // does not answer the GOAWAY.
        self.http2 = HTTP2Channel(responder: responder, configuration: .init(streamConfiguration: streams))
        self.limits = limits
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let http1 = self.http1
        let http2 = self.http2
        return channel.eventLoop.makeCompletedFuture {
            let operations = channel.pipeline.syncOperations
            try operations.addHandler(PlainHTTPRefusal(errorBody: limits.errorBody))
            try operations.addHandler(NIOSSLServerHandler(context: tls.context))
            let negotiation = NIOTypedApplicationProtocolNegotiationHandler<Negotiated> { result in
                switch result {
                case .negotiated("h2"):
                    return http2.setup(channel: channel, logger: logger).flatMapThrowing { value in
                        let operations = channel.pipeline.syncOperations
                        let connectionGuard = HTTP2ConnectionGuard(limits: limits)
                        try operations.addHandler(
                            HTTP2ConnectionGuard.FrameWatch(owner: connectionGuard),
                            position: .before(try operations.handler(type: NIOHTTP2Handler.self)))
                        try operations.addHandler(connectionGuard)
                        return .http2(value)
                    }
                case .negotiated("http/1.1"), .fallback:
                    return http1.setup(channel: channel, logger: logger).map { .http1($0) }
                case .negotiated(let name):
                    return channel.close().flatMapThrowing { throw SecureHTTPChannelError.unexpectedProtocol(name) }
                }
            }
            try operations.addHandler(negotiation)
            let negotiated = negotiation.protocolNegotiationResult
            let timeout = channel.eventLoop.scheduleTask(in: TimeAmount(limits.headerTimeout)) { channel.close(promise: nil) }
            negotiated.whenComplete { _ in timeout.cancel() }
            return Value(negotiated: negotiated, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.negotiated.get() {
            case .http1(let connection): await http1.handle(value: connection, logger: logger)
            case .http2(let connection): await http2.handle(value: connection, logger: logger)
            }
        } catch {
            logger.debug("TLS connection ended before HTTP began", metadata: ["error": "\(error)"])
        }
    }
}

enum SecureHTTPChannelError: Error {
    case unexpectedProtocol(String)
}

/// First on an HTTPS connection, before TLS: a connection that opens with anything but a TLS handshake record is
/// answered `400` in plain HTTP, saying to use `https://`, and its output closed; the handshake time-out ends it.
/// A connection that opens with a handshake is TLS's, and this handler leaves.
final class PlainHTTPRefusal: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// A TLS record of content type 22, the first a client sends.
    private static let handshakeRecord: UInt8 = 0x16

    private let errorBody: @Sendable (_ code: Int, _ message: String, _ path: Substring?) -> ByteBuffer
    private var refused = false

    init(errorBody: @escaping @Sendable (_ code: Int, _ message: String, _ path: Substring?) -> ByteBuffer) {
        self.errorBody = errorBody
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        let bytes = unwrapInboundIn(data)
        guard let first = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) else { return }
        if first == Self.handshakeRecord {
            context.fireChannelRead(data)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        refused = true
        let (path, host) = Self.target(of: bytes)
        let address = "https://\(host ?? "this address")\(path ?? "/")"
        let body = errorBody(400, "this port serves HTTPS: send the request to \(address)", path)
        var reply = context.channel.allocator.buffer(capacity: body.readableBytes + 128)
        reply.writeString(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: \(body.readableBytes)\r\n"
                + "Connection: close\r\n\r\n")
        reply.writeImmutableBuffer(body)
        context.writeAndFlush(wrapOutboundOut(reply)).assumeIsolated().whenComplete { _ in
            // Output only: closing both ways with request bytes unread would reset the connection, and the client
            // could lose the answer.
            context.close(mode: .output, promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if refused, case .inputClosed? = event as? ChannelEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// The path of the request line (without its query) and the `Host` header, when the first bytes hold them and
    /// they are plain text (they are quoted back to the client).
    private static func target(of bytes: ByteBuffer) -> (path: Substring?, host: Substring?) {
        let text = String(decoding: bytes.readableBytesView.prefix(4096), as: UTF8.self)
        let lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
        let words = lines.first?.split(separator: " ") ?? []
        let path = words.count == 3 && words[1].hasPrefix("/") ? words[1].prefix { $0 != "?" } : nil
        let host = lines.dropFirst().first { $0.lowercased().hasPrefix("host:") }?.dropFirst(5).drop { $0 == " " || $0 == "\t" }
            .prefix { $0 != " " && $0 != "\t" }
        let plain = { (text: Substring) in text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-._:[]/%~+".contains($0)) } }
        return (path.flatMap { plain($0) ? $0 : nil }, host.flatMap { !$0.isEmpty && plain($0) && !$0.contains("/") ? $0 : nil })
    }
}

/// Reloads the TLS certificate and key on SIGHUP (`systemctl reload modeld`): new connections get them. Files
/// that do not load leave the previous ones served, and the failure is logged.
struct CertificateReloader: Service, CustomStringConvertible {
    let tls: ServerTLS?
    let logger: Logger
    var description: String { "CertificateReloader" }

    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in hangups {
                guard let tls else {
                    logger.notice("SIGHUP: no TLS certificate to reload (tls_cert is not set)")
                    continue
                }
                do {
                    try tls.reload()
                    logger.notice("TLS certificate reloaded", metadata: ["tls_cert": "\(tls.certificatePath)", "tls_key": "\(tls.keyPath)"])
                } catch {
                    logger.error("TLS certificate not reloaded; the previous one is still served", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
