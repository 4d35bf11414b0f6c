import Catalog
import Downloads
import Foundation
import HTTPTypes
import Hubs
import Hummingbird
import ModelStore
import ModeldAPI
import NIOCore

/// An error the Ollama API reports as Ollama does: `{"error": "..."}` with Ollama's status codes.
struct OllamaError: Error, CustomStringConvertible {
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

    /// The error as one JSON object: `{"error": "..."}`.
    var body: ByteBuffer { OllamaJSON.encode(["error": message]) }

    var response: Response {
        Response(status: status, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: body))
    }
}

/// JSON as the Ollama API writes it.
enum OllamaJSON {
    /// One JSON object, or `{}` for an object JSONSerialization cannot write (never one this API builds).
    static func encode(_ object: [String: Any]) -> ByteBuffer {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes])) ?? Data("{}".utf8)
        return ByteBuffer(bytes: data)
    }

    /// One NDJSON line: the object and a newline.
    static func line(_ object: [String: Any]) -> ByteBuffer {
        var buffer = encode(object)
        buffer.writeInteger(UInt8(ascii: "\n"))
        return buffer
    }

    static func response(_ object: [String: Any], status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: encode(object)))
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
