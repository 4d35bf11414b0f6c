import Foundation
import Hummingbird
import Logging
import ModelText
import ModeldAPI

extension APIError {
    /// An error a route reports itself, with a code named after its status (`badRequest`, `conflict`).
    init(_ status: HTTPResponse.Status, _ message: String, field: String? = nil) {
        self.init(status: status.code, code: Self.code(for: status), message: message, field: field)
    }

    static func badRequest(_ message: String, field: String? = nil) -> APIError { APIError(.badRequest, message, field: field) }
    static func notFound(_ message: String) -> APIError { APIError(.notFound, message) }

    /// The status as Hummingbird sends it.
    var httpStatus: HTTPResponse.Status { HTTPResponse.Status(code: status) }

    private static func code(for status: HTTPResponse.Status) -> String {
        switch status {
        case .badRequest: "badRequest"
        case .unauthorized: "unauthorized"
        case .forbidden: "forbidden"
        case .notFound: "notFound"
        case .methodNotAllowed: "methodNotAllowed"
        case .conflict: "conflict"
        case .contentTooLarge: "contentTooLarge"
        case .tooManyRequests: "rateLimited"
        case .badGateway: "badGateway"
        case .serviceUnavailable: "serviceUnavailable"
        case .internalServerError: "internal"
        default: "http\(status.code)"
        }
    }
}

/// The shapes error replies take, one per API family; every error reply of the daemon, from a route, a middleware or
/// the connection guard, is made by ``body(_:requestID:)``.
enum ErrorShape {
    /// The management API's envelope: `{"request_id": "...", "code": 404, "msg": "...", "data": null}`.
    case envelope
    /// The OpenAI-compatible API's (`/v1/*`): `{"error": {"message", "type", "param", "code"}}`.
    case openAI
    /// Ollama's API: `{"error": "..."}`. Its routes choose it in ``of(path:)`` as they are added.
    case ollama

    /// The shape of the replies on a path.
    static func of(path: some StringProtocol) -> ErrorShape {
        if path.hasPrefix("/v1/") { return .openAI }
        return OllamaController.owns(String(path)) ? .ollama : .envelope
    }

    /// The JSON body of an error reply.
    func body(_ error: APIError, requestID: String) -> ByteBuffer {
        switch self {
        case .envelope:
            let body = Envelope<EmptyPayload>(requestID: requestID, code: error.status, msg: error.message, data: nil)
            return ByteBuffer(bytes: (try? WireJSON.encoder().encode(body)) ?? Data("{}".utf8))
        case .openAI:
            let body: [String: Any] = [
                "error": [
                    "message": error.message, "type": Self.openAIType(error.status), "param": error.field as Any? ?? NSNull(),
                    "code": error.status,
                ]
            ]
            return ByteBuffer(bytes: (try? JSONSerialization.data(withJSONObject: body, options: [.withoutEscapingSlashes])) ?? Data())
        case .ollama:
            let body = ["error": error.message]
            return ByteBuffer(bytes: (try? JSONSerialization.data(withJSONObject: body, options: [.withoutEscapingSlashes])) ?? Data())
        }
    }

    /// The error reply: the error's status and ``body(_:requestID:)``.
    func response(_ error: APIError, requestID: String) -> Response {
        // Ollama's server names the charset, as the envelope does; OpenAI's does not.
        let contentType = self == .openAI ? "application/json" : "application/json; charset=utf-8"
        return Response(status: error.httpStatus, headers: [.contentType: contentType], body: .init(byteBuffer: body(error, requestID: requestID)))
    }

    /// OpenAI's error type for a status, as its client libraries name their exceptions.
    private static func openAIType(_ status: Int) -> String {
        switch status {
        case 401: "AuthenticationError"
        case 403: "PermissionDeniedError"
        case 404: "NotFoundError"
        case 409: "ConflictError"
        case 422: "UnprocessableEntityError"
        case 429: "RateLimitError"
        case 502: "BadGatewayError"
        case 503: "ServiceUnavailableError"
        case 500...: "InternalServerError"
        default: "BadRequestError"
        }
    }
}

/// Turns every error thrown below it into the reply of its route's ``ErrorShape``, so that no route converts errors
/// itself: an ``APIErrorConvertible`` error (the domain's errors, ``APIError``) with its status and message, a
/// Hummingbird error (no such route) with its status, anything else as a 500 whose cause goes to the log only.
struct ErrorReplyMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            return ErrorShape.of(path: request.uri.path).response(Self.apiError(error, request: request, context: context), requestID: context.id)
        }
    }

    /// What the client is told about `error`.
    static func apiError(_ error: any Error, request: Request, context: Context) -> APIError {
        switch error {
        case let error as any APIErrorConvertible:
            return error.apiError
        case let error as HTTPError:
            return APIError(error.status, error.body ?? defaultMessage(for: error.status, request: request))
        case let error as any HTTPResponseError:
            return APIError(error.status, "\(error)")
        default:
            context.logger.error("request failed", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            return APIError(.internalServerError, "internal error (request id \(context.id))")
        }
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
