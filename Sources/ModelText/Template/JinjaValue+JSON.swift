extension JinjaValue {
    /// Parses JSON keeping object keys in document order (Foundation's parser does not), so that request
    /// bodies and tool schemas print back through `tojson` exactly as Python would print them.
    /// - Throws: ``TemplateError`` for malformed JSON.
    package init(json bytes: some Collection<UInt8>) throws {
        var parser = OrderedJSONParser(bytes: Array(bytes))
        self = try parser.parseDocument()
    }

    /// The options of Python's `json.dumps` that templates pass through `tojson`.
    package struct JSONOptions {
        package var ensureASCII = false
        package var indent: Int?
        package var sortKeys = false
        /// (item separator, key separator); nil means Python's default for the indent.
        package var separators: (String, String)?
        package init() {}
    }

    /// The text of `json.dumps(value, ensure_ascii=False, indent=indent)` (separators `", "`/`": "`
    /// without indent, `","`/`": "` with it, as Python chooses).
    package func pythonJSON(indent: Int? = nil) throws -> String {
        var options = JSONOptions()
        options.indent = indent
        return try pythonJSON(options)
    }

    /// The text of `json.dumps(value, **options)`.
    package func pythonJSON(_ options: JSONOptions) throws -> String {
        var out = ""
        let separators = options.separators ?? (options.indent == nil ? (", ", ": ") : (",", ": "))
        try writeJSON(into: &out, options, separators, depth: 0)
        return out
    }

    /// - Throws: past ``TemplateLimits/maxValueDepth`` levels of nesting (Python's "Circular reference detected"
    /// for a namespace that holds itself), or ``TemplateLimits/maxStringBytes`` of text.
    private func writeJSON(into out: inout String, _ options: JSONOptions, _ separators: (String, String), depth: Int) throws {
        guard depth <= TemplateLimits.maxValueDepth else {
            throw TemplateError(.invalidJSON, "cannot serialize values nested deeper than the limit of \(TemplateLimits.maxValueDepth) levels")
        }
        switch self {
        case .none: out += "null"
        case .bool(let value): out += value ? "true" : "false"
        case .int(let value): out += String(value)
        case .double(let value):
            if value.isNaN {
                out += "NaN"
            } else if value.isInfinite {
                out += value < 0 ? "-Infinity" : "Infinity"
            } else {
                out += Self.pythonFloat(value)
            }
        case .string(let value): Self.writeJSONString(value, into: &out, ensureASCII: options.ensureASCII)
        case .array(let values):
            guard !values.isEmpty else {
                out += "[]"
                return
            }
            out += "["
            for (index, value) in values.enumerated() {
                if index > 0 { out += separators.0 }
                try Self.writeIndent(options.indent, depth: depth + 1, into: &out)
                try value.writeJSON(into: &out, options, separators, depth: depth + 1)
            }
            try Self.writeIndent(options.indent, depth: depth, into: &out)
            out += "]"
        case .object(let object):
            try Self.writeJSONObject(object, into: &out, options, separators, depth: depth)
        case .namespace(let namespace):
            try Self.writeJSONObject(namespace.attributes, into: &out, options, separators, depth: depth)
        case .undefined, .function, .macro:
            throw TemplateError(.runtime, "Object of type \(typeName) is not JSON serializable")
        }
    }

    private static func writeJSONObject(
        _ object: JinjaObject, into out: inout String, _ options: JSONOptions, _ separators: (String, String), depth: Int
    ) throws {
        guard !object.isEmpty else {
            out += "{}"
            return
        }
        out += "{"
        var pairs = object.pairs
        if options.sortKeys { pairs.sort { Array($0.key.unicodeScalars.map(\.value)).lexicographicallyPrecedes($1.key.unicodeScalars.map(\.value)) } }
        for (index, (key, value)) in pairs.enumerated() {
            if index > 0 { out += separators.0 }
            try writeIndent(options.indent, depth: depth + 1, into: &out)
            writeJSONString(key, into: &out, ensureASCII: options.ensureASCII)
            out += separators.1
            try value.writeJSON(into: &out, options, separators, depth: depth + 1)
        }
        try writeIndent(options.indent, depth: depth, into: &out)
        out += "}"
    }

    /// A newline and `indent` spaces per level (none for a negative indent, as in Python).
    /// - Throws: when the text would pass ``TemplateLimits/maxStringBytes``.
    private static func writeIndent(_ indent: Int?, depth: Int, into out: inout String) throws {
        guard let indent else { return }
        let (width, overflow) = max(indent, 0).multipliedReportingOverflow(by: depth)
        guard !overflow, out.utf8.count + width < TemplateLimits.maxStringBytes else {
            throw TemplateLimits.exceeded("serializes JSON longer than the limit of \(TemplateLimits.maxStringBytes >> 20) MiB")
        }
        out += "\n" + String(repeating: " ", count: width)
    }

    /// Python's JSON string escaping: `"`, `\`, and controls always; everything above ASCII too (as
    /// UTF-16 `\uXXXX` units) when `ensureASCII`.
    private static func writeJSONString(_ string: String, into out: inout String, ensureASCII: Bool) {
        func hex4(_ unit: UInt32) -> String {
            let hex = String(unit, radix: 16)
            return "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        }
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
                if scalar.value < 0x20 || (ensureASCII && scalar.value > 0x7E) {
                    for unit in String(scalar).utf16 { out += hex4(UInt32(unit)) }
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
