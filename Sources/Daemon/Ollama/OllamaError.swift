import Foundation
import Hummingbird
import Launchers
import ModeldAPI
import NIOCore

/// An error the Ollama API reports as Ollama does: `{"error": "..."}` with Ollama's status codes. Thrown from a route, it
/// is written by ``ErrorReplyMiddleware`` in the Ollama shape like any other error on Ollama's paths.
struct OllamaError: APIErrorConvertible, CustomStringConvertible {
    var status: HTTPResponse.Status
    var message: String

    init(_ status: HTTPResponse.Status, _ message: String) {
        self.status = status
        self.message = message
    }

    var description: String { message }

    /// Ollama's 404 for a model it does not have.
    static func modelNotFound(_ name: String) -> OllamaError {
        OllamaError(.notFound, "model \"\(name)\" not found, try pulling it first")
    }

    var apiError: APIError { APIError(status, message) }

    /// The reply, for a route that answers the error rather than throwing it.
    var response: Response { ErrorShape.ollama.response(apiError, requestID: "") }

    /// A run's engine that did not answer a request (500).
    static func engineDidNotAnswer(_ run: RunInfo, _ error: any Error) -> OllamaError {
        OllamaError(.internalServerError, "the \(run.engine.displayName) of run \(run.name) did not answer: \(error)")
    }

    /// The error as the last line of a streamed reply, which Ollama ends with it.
    var line: ByteBuffer { OllamaJSON.line(["error": message]) }
}

/// JSON as the Ollama API writes it.
enum OllamaJSON {
    /// The `Content-Type` of a whole reply.
    static let contentType = "application/json; charset=utf-8"

    /// One JSON object, members in no particular order. Written here: JSONSerialization takes tens of
    /// microseconds for one reply line, several times the cost of the rest of a line's way (docs/benchmarks.md,
    /// Ollama API). Values are what this API builds and what JSONSerialization reads: strings, numbers, booleans,
    /// null, arrays and objects; anything else is written as null.
    static func encode(_ object: [String: Any]) -> ByteBuffer {
        var buffer = ByteBuffer()
        write(object, to: &buffer)
        return buffer
    }

    private static func write(_ value: Any, to buffer: inout ByteBuffer) {
        switch value {
        case let string as String:
            buffer.writeBytes(JSONMembers.encode(string))
        case let object as [String: Any]:
            buffer.writeInteger(UInt8(ascii: "{"))
            for (index, (key, member)) in object.enumerated() {
                if index > 0 { buffer.writeInteger(UInt8(ascii: ",")) }
                buffer.writeBytes(JSONMembers.encode(key))
                buffer.writeInteger(UInt8(ascii: ":"))
                write(member, to: &buffer)
            }
            buffer.writeInteger(UInt8(ascii: "}"))
        case let array as [Any]:
            buffer.writeInteger(UInt8(ascii: "["))
            for (index, element) in array.enumerated() {
                if index > 0 { buffer.writeInteger(UInt8(ascii: ",")) }
                write(element, to: &buffer)
            }
            buffer.writeInteger(UInt8(ascii: "]"))
        default:
            buffer.writeString(scalar(value))
        }
    }

    /// A number's, a boolean's or null's JSON text; Swift's own types first, then JSONSerialization's `NSNumber`
    /// (whose booleans have the C type `char`).
    private static func scalar(_ value: Any) -> String {
        switch value {
        case let bool as Bool where type(of: value) == Bool.self: return bool ? "true" : "false"
        case let int as Int where type(of: value) == Int.self: return String(int)
        case let int as Int64 where type(of: value) == Int64.self: return String(int)
        case let double as Double where type(of: value) == Double.self: return double.isFinite ? "\(double)" : "null"
        case let number as NSNumber:
            switch String(cString: number.objCType) {
            case "c": return number.boolValue ? "true" : "false"
            case "f", "d": return number.doubleValue.isFinite ? "\(number.doubleValue)" : "null"
            case "Q", "L": return String(number.uint64Value)
            default: return String(number.int64Value)
            }
        default: return "null"
        }
    }

    /// One NDJSON line: the object and a newline.
    static func line(_ object: [String: Any]) -> ByteBuffer {
        var buffer = encode(object)
        buffer.writeInteger(UInt8(ascii: "\n"))
        return buffer
    }

    static func response(_ object: [String: Any], status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: contentType], body: .init(byteBuffer: encode(object)))
    }

    /// A JSON number as JSONSerialization read it; nil for anything else, `true` and `false` too (which it reads
    /// as numbers of the C type `char`).
    static func number(_ value: Any) -> NSNumber? {
        guard let number = value as? NSNumber, !(value is String) else { return nil }
        return String(cString: number.objCType) == "c" ? nil : number
    }

    /// A time as Ollama writes it: RFC 3339 in UTC with fractional seconds (microseconds here), from the C library
    /// as the wire's other dates (``UTCTime``).
    static func time(_ date: Date) -> String {
        let interval = date.timeIntervalSince1970
        let seconds = Int(interval.rounded(.down))
        let microseconds = min(999_999, Int(((interval - Double(seconds)) * 1e6).rounded(.down)))
        return UTCTime(seconds: seconds).dateTime(separator: "T") + "." + UTCTime.padded(microseconds, 6) + "Z"
    }

    /// A duration in whole nanoseconds, Ollama's unit for durations.
    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
