import Hummingbird
import Launchers
import ModeldAPI
import NIOCore
import Transfer

/// Forwards one routed request (the gateway's router side, the LLM API) to a run's engine through
/// ``EngineClient``: the request's lease on the run (``RunLease``) is released when the exchange ends.
enum EngineProxy {
    /// The reply forwarded chunk by chunk as the engine sends it, at the client's pace; a client that goes away
    /// cancels the engine's request.
    /// - Throws: ``APIError/engineDidNotAnswer(_:)`` when the engine did not answer at all.
    static func stream(_ request: EngineRequest, lease: RunLease, client: EngineClient = .shared) async throws -> Response {
        let upstream: EngineReply
        do {
            upstream = try await open(request, lease: lease, client: client)
        } catch {
            throw APIError.engineDidNotAnswer(error)
        }
        return relay(upstream)
    }

    /// A reply whose head has arrived, forwarded chunk by chunk at the client's pace; a client that goes away
    /// cancels it.
    /// - Parameter firstChunk: called when the body's first chunk arrives (the routing layer's time to first token).
    static func relay(_ upstream: EngineReply, firstChunk: (@Sendable () -> Void)? = nil) -> Response {
        var headers: HTTPFields = [:]
        headers[.contentType] = upstream.head.headers["content-type"] ?? "application/json"
        if let cache = upstream.head.headers["cache-control"] { headers[.cacheControl] = cache }
        return Response(
            status: HTTPResponse.Status(code: upstream.status),
            headers: headers,
            body: ResponseBody { writer in
                do {
                    var first = firstChunk
                    for try await chunk in upstream.body {
                        first?()
                        first = nil
                        try await writer.write(chunk)
                    }
                    try await writer.finish(nil)
                } catch {
                    // The client went away (or the engine broke off): stop the engine's request.
                    upstream.cancel()
                    throw error
                }
            })
    }

    /// A reply that is not streamed, read whole, to be sent in one piece.
    /// - Throws: when the engine did not answer or broke off.
    static func fetch(
        _ request: EngineRequest, lease: RunLease, client: EngineClient = .shared
    ) async throws -> (head: Transfer.HTTPResponseHead, body: ByteBuffer) {
        try await client.fetch(request) { lease.release() }
    }

    /// Sends `request` and returns once the reply's head has arrived.
    /// - Throws: when the engine did not answer at all.
    static func open(_ request: EngineRequest, lease: RunLease, client: EngineClient = .shared) async throws -> EngineReply {
        try await client.send(request) { lease.release() }
    }
}
