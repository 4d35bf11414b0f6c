extension JinjaValue {
    /// Python's `str(value)` as Jinja prints it: undefined prints nothing, `None`, `True`, lists and dicts
    /// in their repr form.
    package func pythonString() -> String {
        switch self {
        case .undefined: ""
        case .string(let value): value
        default: pythonRepr()
        }
    }

    /// Python's `repr(value)`. Past ``TemplateLimits/maxValueDepth`` levels of nesting it prints `...`, as
    /// Python prints a list that holds itself.
    package func pythonRepr() -> String {
        pythonRepr(depth: 0)
    }

    private func pythonRepr(depth: Int) -> String {
        if depth > TemplateLimits.maxValueDepth { return "..." }
        let depth = depth + 1
        return switch self {
        case .undefined: ""
        case .none: "None"
        case .bool(let value): value ? "True" : "False"
        case .int(let value): String(value)
        case .double(let value): Self.pythonFloat(value)
        case .string(let value): Self.pythonStringRepr(value)
        case .array(let items): "[" + items.map { $0.pythonRepr(depth: depth) }.joined(separator: ", ") + "]"
        case .object(let object):
            "{" + object.pairs.map { Self.pythonStringRepr($0.key) + ": " + $0.value.pythonRepr(depth: depth) }.joined(separator: ", ") + "}"
        case .namespace(let namespace): "<Namespace " + JinjaValue.object(namespace.attributes).pythonRepr(depth: depth) + ">"
        case .function(let function): "<function \(function.name)>"
        case .macro(let macro): "<Macro '\(macro.name)'>"
        }
    }

    /// Python's string repr: single quotes unless the text has a single quote and no double quote.
    private static func pythonStringRepr(_ string: String) -> String {
        let quote: Unicode.Scalar = string.unicodeScalars.contains("'") && !string.unicodeScalars.contains("\"") ? "\"" : "'"
        var out = String(quote)
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar == quote {
                    out += "\\" + String(scalar)
                } else if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\x" + (hex.count < 2 ? "0" : "") + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out.unicodeScalars.append(quote)
        return out
    }
}
