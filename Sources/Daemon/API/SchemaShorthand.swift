import ModelText
import ModeldAPI

/// The earlier service's schema shorthand for structured output (docs/older-api.md): `{"name": "string", "age":
/// "int"}`, each field a type name, expanded into the JSON Schema of an object with those fields, all required and
/// no others. A value may also be a nested shorthand object, or a list of one type (`["string"]`). An object is
/// taken for the shorthand when none of its keys is a JSON Schema keyword, so `{"type": "object", ...}` stays a
/// schema.
enum SchemaShorthand {
    /// The JSON Schema keywords whose presence marks an object as a schema rather than the shorthand.
    static let keywords: Set<String> = [
        "type", "properties", "items", "prefixItems", "required", "additionalProperties", "enum", "const", "anyOf", "oneOf",
        "allOf", "not", "$ref", "$schema", "$defs", "definitions", "$id", "title", "description", "format", "pattern",
        "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "default",
    ]

    /// The JSON Schema types the shorthand's type names stand for (Python's names too).
    static let types: [String: String] = [
        "string": "string", "str": "string", "text": "string",
        "integer": "integer", "int": "integer",
        "number": "number", "float": "number", "double": "number",
        "boolean": "boolean", "bool": "boolean",
        "array": "array", "list": "array",
        "object": "object", "dict": "object",
        "null": "null", "none": "null",
    ]

    /// The JSON Schema for a shorthand object; nil when `given` is a JSON Schema already (or empty).
    /// - Throws: 400 naming the field whose value is not a type name, a nested shorthand or a list of one type.
    static func expand(_ given: JinjaObject) throws -> JinjaObject? {
        guard !given.isEmpty, !given.keys.contains(where: keywords.contains) else { return nil }
        return try object(given, path: "schema")
    }

    private static func object(_ fields: JinjaObject, path: String) throws -> JinjaObject {
        var properties = JinjaObject()
        for (name, value) in fields.pairs {
            properties[name] = .object(try schema(value, path: "\(path).\(name)"))
        }
        return JinjaObject([
            "type": "object", "properties": .object(properties), "required": .array(fields.keys.map { .string($0) }),
            "additionalProperties": false,
        ])
    }

    private static func schema(_ value: JinjaValue, path: String) throws -> JinjaObject {
        switch value {
        case .string(let name):
            guard let type = types[name.lowercased()] else {
                throw APIError.badRequest(
                    "\(path): \"\(name)\" is not a type of the schema shorthand (string, integer, number, boolean, array, object, null)",
                    field: path)
            }
            return JinjaObject(["type": .string(type)])
        case .object(let nested) where !nested.isEmpty:
            return try object(nested, path: path)
        case .array(let items) where items.count == 1:
            return JinjaObject(["type": "array", "items": .object(try schema(items[0], path: "\(path)[0]"))])
        default:
            throw APIError.badRequest(
                "\(path): in the schema shorthand a field is a type name, an object of fields, or a list of one type", field: path)
        }
    }
}
