import FoundationEssentials
import Glibc

/// The management API's response envelope: every reply, success or error, has this shape.
///
/// ```json
/// {"request_id": "9f1c...", "code": 200, "msg": "success", "data": ...}
/// ```
package struct Envelope<Payload: Codable & Sendable>: Codable, Sendable {
    package var requestID: String
    package var code: Int
    package var msg: String
    package var data: Payload?

    package init(requestID: String, code: Int = 200, msg: String = "success", data: Payload?) {
        self.requestID = requestID
        self.code = code
        self.msg = msg
        self.data = data
    }

    enum CodingKeys: String, CodingKey {
        case requestID = "request_id"
        case code, msg, data
    }

    /// Encodes `data` as JSON `null` when absent, as the envelope always has all four fields.
    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(requestID, forKey: .requestID)
        try container.encode(code, forKey: .code)
        try container.encode(msg, forKey: .msg)
        if let data { try container.encode(data, forKey: .data) } else { try container.encodeNil(forKey: .data) }
    }
}

/// The payload of an envelope that carries none.
package struct EmptyPayload: Codable, Sendable, Equatable {
    package init() {}
}

/// The JSON coders used on the wire: ISO 8601 dates, sorted keys for stable output.
package enum WireJSON {
    package static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(iso8601(date))
        }
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// `2026-11-22T03:04:05Z`, as `JSONEncoder`'s `.iso8601` writes it, but from the C library: Foundation's
    /// ISO 8601 formatting loads ICU's calendar data into the daemon (about 4 MB of RSS) on the first event.
    package static func iso8601(_ date: Date) -> String {
        UTCTime(seconds: Int(date.timeIntervalSince1970.rounded(.down))).dateTime(separator: "T") + "Z"
    }

    package static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}

/// Names a place in a JSON document for error messages.
package enum JSONPath {
    /// A decoding path as `files[2].size`.
    package static func of(_ path: [any CodingKey]) -> String {
        path.reduce(into: "") { result, key in
            if let index = key.intValue { result += "[\(index)]" } else { result += result.isEmpty ? key.stringValue : ".\(key.stringValue)" }
        }
    }

    /// The JSON kind a Swift type decodes from, with its article: `a string`, `an integer`, `an object`.
    package static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type: "an integer"
        case is Double.Type: "a number"
        case is Bool.Type: "a boolean"
        default: "\(type)".hasPrefix("Array") ? "an array" : "an object"
        }
    }
}
