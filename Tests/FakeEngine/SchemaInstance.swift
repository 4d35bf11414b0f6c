import Foundation

/// A value that satisfies a simple JSON schema, as an engine with constrained decoding would produce:
/// `const`, then the first of `enum`, then by `type` (every property of an object, one item of an array).
enum SchemaInstance {
    static func make(_ schema: Any) -> Any {
        guard let schema = schema as? [String: Any] else { return [String: Any]() }
        if let value = schema["const"] { return value }
        if let values = schema["enum"] as? [Any], let first = values.first { return first }
        let type = (schema["type"] as? String) ?? ((schema["type"] as? [String])?.first) ?? (schema["properties"] != nil ? "object" : "null")
        switch type {
        case "object":
            let properties = schema["properties"] as? [String: Any] ?? [:]
            return properties.mapValues { make($0) }
        case "array":
            return [make(schema["items"] ?? [:])]
        case "string": return "text"
        case "integer": return 7
        case "number": return 0.5
        case "boolean": return true
        default: return NSNull()
        }
    }
}
