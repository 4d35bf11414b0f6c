/// A failure as the API reports it: the HTTP status, a stable code and one sentence a user can act on.
///
/// The daemon turns it into a reply once, in the shape of the route that failed: the management envelope
/// (`{"request_id", "code", "msg", "data": null}`), OpenAI's `{"error": {"message", "type", "param", "code"}}` under
/// `/v1/`, or Ollama's `{"error": "..."}`. The message never holds a token or a key.
package struct APIError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The HTTP status code of the reply: 404, 409, 502...
    package var status: Int
    /// A name for the failure that does not change with the wording (`runNotFound`, `gated`), for programs and logs.
    package var code: String
    package var message: String
    /// The request field at fault, when one is (OpenAI's `param`).
    package var field: String?

    package init(status: Int, code: String, message: String, field: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
    }

    package var description: String { message }
}

/// An error that says how the API reports it. Domain errors adopt it where they are declared, so that no
/// controller needs to catch and convert them; an error that does not adopt it is an internal error (500, the
/// message logged, not sent).
package protocol APIErrorConvertible: Error {
    var apiError: APIError { get }
}

extension APIError: APIErrorConvertible {
    package var apiError: APIError { self }
}
