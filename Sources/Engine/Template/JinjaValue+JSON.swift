extension JinjaValue {
    /// Parses JSON keeping object keys in document order (Foundation's parser does not), so that request
    /// bodies and tool schemas print back through `tojson` exactly as Python would print them.
    /// - Throws: ``TemplateError`` for malformed JSON.
    package init(json bytes: some Collection<UInt8>) throws {
        var parser = OrderedJSONParser(bytes: Array(bytes))
        self = try parser.parseDocument()
    }

    /// The text of `json.dumps(value, ensure_ascii=False, indent=indent)` (separators `", "`/`": "`
    /// without indent, `","`/`": "` with it, as Python chooses).
    package func pythonJSON(indent: Int? = nil) throws -> String {
        var out = ""
        try writeJSON(into: &out, indent: indent, depth: 0)
        return out
    }

    private func writeJSON(into out: inout String, indent: Int?, depth: Int) throws {
        switch self {
        case .none: out += "null"
        case .bool(let value): out += value ? "true" : "false"
        case .int(let value): out += String(value)
        case .double(let value):
            if value.isNaN { out += "NaN" } else if value.isInfinite { out += value < 0 ? "-Infinity" : "Infinity" } else { out += Self.pythonFloat(value) }
        case .string(let value): Self.writeJSONString(value, into: &out)
        case .array(let values):
            guard !values.isEmpty else { out += "[]"; return }
            out += "["
            for (index, value) in values.enumerated() {
                if index > 0 { out += indent == nil ? ", " : "," }
                if let indent { out += "\n" + String(repeating: " ", count: indent * (depth + 1)) }
                try value.writeJSON(into: &out, indent: indent, depth: depth + 1)
            }
            if let indent { out += "\n" + String(repeating: " ", count: indent * depth) }
            out += "]"
        case .object(let object):
            try Self.writeJSONObject(object, into: &out, indent: indent, depth: depth)
        case .namespace(let namespace):
            try Self.writeJSONObject(namespace.attributes, into: &out, indent: indent, depth: depth)
        case .undefined, .function, .macro:
            throw TemplateError(.runtime, "Object of type \(typeName) is not JSON serializable")
        }
    }

    private static func writeJSONObject(_ object: JinjaObject, into out: inout String, indent: Int?, depth: Int) throws {
        guard !object.isEmpty else { out += "{}"; return }
        out += "{"
        for (index, (key, value)) in object.pairs.enumerated() {
            if index > 0 { out += indent == nil ? ", " : "," }
            if let indent { out += "\n" + String(repeating: " ", count: indent * (depth + 1)) }
            writeJSONString(key, into: &out)
            out += ": "
            try value.writeJSON(into: &out, indent: indent, depth: depth + 1)
        }
        if let indent { out += "\n" + String(repeating: " ", count: indent * depth) }
        out += "}"
    }

    /// Python's JSON string escaping with `ensure_ascii=False`: only `"`, `\`, and controls are escaped.
    private static func writeJSONString(_ string: String, into out: inout String) {
        out += "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }

    /// Python's `repr(float)`. Swift's shortest round-trip form matches it for the values templates
    /// meet (`0.5`, `1e-05`, `1e+16`); only the `.0` of integral values needs adding.
    package static func pythonFloat(_ value: Double) -> String {
        if value.isNaN { return "nan" }
        if value.isInfinite { return value < 0 ? "-inf" : "inf" }
        let text = "\(value)"
        return text.contains(".") || text.contains("e") ? text : text + ".0"
    }
}
