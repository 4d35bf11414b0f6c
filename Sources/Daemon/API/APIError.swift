import Foundation
import Hummingbird
import Logging
import ModelText
import ModeldAPI

/// An error the management API reports to clients, in the envelope, with a status and a message a user can act on.
struct APIError: Error, CustomStringConvertible {
    var status: HTTPResponse.Status
    var message: String

    init(_ status: HTTPResponse.Status, _ message: String) {
        self.status = status
        self.message = message
    }

    var description: String { message }

    static func badRequest(_ message: String) -> APIError { APIError(.badRequest, message) }
    static func notFound(_ message: String) -> APIError { APIError(.notFound, message) }
}

/// Turns every error thrown below it into the management envelope, so clients see one error shape everywhere:
/// `{"request_id": "...", "code": 404, "msg": "...", "data": null}`.
struct EnvelopeErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return Self.envelope(status: error.status, message: error.message, requestID: context.id)
        } catch let error as HTTPError {
            let message = error.body ?? Self.defaultMessage(for: error.status, request: request)
            return Self.envelope(status: error.status, message: message, requestID: context.id)
        } catch let error as any HTTPResponseError {
            return Self.envelope(status: error.status, message: "\(error)", requestID: context.id)
        } catch {
            context.logger.error("request failed", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            return Self.envelope(
                status: .internalServerError, message: "internal error (request id \(context.id))", requestID: context.id)
        }
    }

    static func envelope(status: HTTPResponse.Status, message: String, requestID: String) -> Response {
        let body = Envelope<EmptyPayload>(requestID: requestID, code: status.code, msg: message, data: nil)
        let data = (try? WireJSON.encoder().encode(body)) ?? Data("{}".utf8)
        return Response(
            status: status,
            headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    private static func defaultMessage(for status: HTTPResponse.Status, request: Request) -> String {
        switch status {
        case .notFound: "no route for \(request.method) \(request.uri.path)"
        case .methodNotAllowed: "method \(request.method) is not allowed on \(request.uri.path)"
        case .badRequest: "bad request"
        default: status.reasonPhrase
        }
    }
}

extension Envelope: ResponseGenerator {
    /// Encodes the envelope with the wire encoder; the HTTP status mirrors `code`.
    package func response(from request: Request, context: some RequestContext) throws -> Response {
        let data = try WireJSON.encoder().encode(self)
        return Response(
            status: .init(code: code),
            headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

extension Request {
    /// Decodes a JSON body, turning any failure into a 400 that names what is wrong.
    func decodeJSON<T: Decodable>(as type: T.Type, context: some RequestContext) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await body.collect(upTo: context.maxUploadSize)
        } catch {
            throw APIError(.contentTooLarge, "request body is larger than \(context.maxUploadSize) bytes")
        }
        return try APIError.decodeJSON(as: type, from: Data(buffer.readableBytesView))
    }
}

extension APIError {
    /// Decodes a JSON request body, turning any failure into a 400 that names what is wrong (also JSON nested
    /// past ``JSONLimits/maxDepth``).
    static func decodeJSON<T: Decodable>(as type: T.Type, from data: Data) throws -> T {
        do {
            return try JSONLimits.decode(T.self, from: data)
        } catch let error as JSONLimitError {
            throw APIError.badRequest("malformed JSON body: \(error.message)")
        } catch let DecodingError.dataCorrupted(context) {
            throw APIError.badRequest("malformed JSON body: \(context.debugDescription)")
        } catch let DecodingError.keyNotFound(key, context) {
            throw APIError.badRequest("missing field \"\(JSONPath.of(context.codingPath + [key]))\"")
        } catch let DecodingError.typeMismatch(type, context) {
            throw APIError.badRequest("field \"\(JSONPath.of(context.codingPath))\" must be \(JSONPath.typeName(type))")
        } catch let DecodingError.valueNotFound(type, context) {
            throw APIError.badRequest("field \"\(JSONPath.of(context.codingPath))\" must be \(JSONPath.typeName(type)), not null")
        } catch {
            throw APIError.badRequest("malformed JSON body: \(error)")
        }
    }
}
