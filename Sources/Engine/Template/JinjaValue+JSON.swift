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

/// A small JSON parser that keeps object key order.
struct OrderedJSONParser {
    let bytes: [UInt8]
    var position = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func parseDocument() throws -> JinjaValue {
        let value = try parseValue()
        skipWhitespace()
        guard position == bytes.count else { throw error("trailing characters") }
        return value
    }

    private func error(_ message: String) -> TemplateError {
        TemplateError(.invalidJSON, "invalid JSON at byte \(position): \(message)")
    }

    private mutating func skipWhitespace() {
        while position < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[position]) { position += 1 }
    }

    private mutating func parseValue() throws -> JinjaValue {
        skipWhitespace()
        guard position < bytes.count else { throw error("unexpected end") }
        switch bytes[position] {
        case UInt8(ascii: "{"):
            position += 1
            var object = JinjaObject()
            skipWhitespace()
            if position < bytes.count && bytes[position] == UInt8(ascii: "}") { position += 1; return .object(object) }
            while true {
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { throw error("expected a key") }
                let key = try parseString()
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { throw error("expected ':'") }
                position += 1
                object[key] = try parseValue()
                skipWhitespace()
                guard position < bytes.count else { throw error("unexpected end") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "}") { position += 1; return .object(object) }
                throw error("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            position += 1
            var array: [JinjaValue] = []
            skipWhitespace()
            if position < bytes.count && bytes[position] == UInt8(ascii: "]") { position += 1; return .array(array) }
            while true {
                array.append(try parseValue())
                skipWhitespace()
                guard position < bytes.count else { throw error("unexpected end") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "]") { position += 1; return .array(array) }
                throw error("expected ',' or ']'")
            }
        case UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "n"): return try literal("null", .none)
        default: return try parseNumber()
        }
    }

    private mutating func literal(_ word: String, _ value: JinjaValue) throws -> JinjaValue {
        let end = position + word.utf8.count
        guard end <= bytes.count, bytes[position..<end].elementsEqual(word.utf8) else { throw error("unexpected token") }
        position = end
        return value
    }

    private mutating func parseNumber() throws -> JinjaValue {
        let start = position
        var isFloat = false
        while position < bytes.count {
            let byte = bytes[position]
            if (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "+") {
                position += 1
            } else if byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") {
                isFloat = true
                position += 1
            } else {
                break
            }
        }
        let text = String(decoding: bytes[start..<position], as: UTF8.self)
        if !isFloat, let value = Int(text) { return .int(value) }
        guard let value = Double(text) else { throw error("bad number \(text)") }
        return .double(value)
    }

    private mutating func parseString() throws -> String {
        position += 1  // opening quote
        var scalars = String.UnicodeScalarView()
        var runStart = position
        func flush(_ parser: OrderedJSONParser, upTo end: Int) {
            scalars.append(contentsOf: String(decoding: parser.bytes[runStart..<end], as: UTF8.self).unicodeScalars)
        }
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                flush(self, upTo: position)
                position += 1
                return String(scalars)
            }
            if byte == UInt8(ascii: "\\") {
                flush(self, upTo: position)
                position += 1
                guard position < bytes.count else { break }
                let escape = bytes[position]
                position += 1
                switch escape {
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if (0xD800..<0xDC00).contains(code), position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") {
                        position += 2
                        let low = try hex4()
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    scalars.append(Unicode.Scalar(code) ?? "\u{FFFD}")
                default: scalars.append(Unicode.Scalar(escape))
                }
                runStart = position
                continue
            }
            position += 1
        }
        throw error("unterminated string")
    }

    private mutating func hex4() throws -> UInt32 {
        guard position + 4 <= bytes.count, let code = UInt32(String(decoding: bytes[position..<position + 4], as: UTF8.self), radix: 16) else {
            throw error("bad \\u escape")
        }
        position += 4
        return code
    }
}
