/// A value inside a chat template: the JSON-like data of messages and tools, plus what templates make.
///
/// Mappings keep insertion order because `tojson` must print keys in the order Python dicts hold them.
package enum JinjaValue: Sendable {
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JinjaValue])
    case object(JinjaObject)
    /// A `namespace()`: the one mutable value, shared by reference so `set ns.x` outlives loop scopes.
    case namespace(JinjaNamespace)
    /// A global function (`raise_exception`, `strftime_now`, `namespace`, `range`, `dict`) or a bound
    /// method (`"a".split`, `d.items`), called by name.
    indirect case function(JinjaFunction)
    /// A `{% macro %}` defined in the template.
    indirect case macro(JinjaMacro)

    /// Python truthiness.
    package var isTruthy: Bool {
        switch self {
        case .undefined, .none: false
        case .bool(let value): value
        case .int(let value): value != 0
        case .double(let value): value != 0
        case .string(let value): !value.isEmpty
        case .array(let value): !value.isEmpty
        case .object(let value): !value.isEmpty
        case .namespace, .function, .macro: true
        }
    }

    package var isUndefined: Bool {
        if case .undefined = self { true } else { false }
    }

    /// The Python type name, for error messages that match Python's wording.
    package var typeName: String {
        switch self {
        case .undefined: "Undefined"
        case .none: "NoneType"
        case .bool: "bool"
        case .int: "int"
        case .double: "float"
        case .string: "str"
        case .array: "list"
        case .object: "dict"
        case .namespace: "Namespace"
        case .function, .macro: "function"
        }
    }
}

extension JinjaValue: Equatable {
    /// Python `==`: numbers compare across int/float/bool, containers element-wise.
    package static func == (lhs: JinjaValue, rhs: JinjaValue) -> Bool {
        switch (lhs, rhs) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let a), .string(let b)): return Array(a.unicodeScalars) == Array(b.unicodeScalars)
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)): return a == b
        case (.namespace(let a), .namespace(let b)): return a === b
        default:
            if let a = lhs.numericValue, let b = rhs.numericValue { return a == b }
            return false
        }
    }

    /// Whether lists, dicts and namespaces nest more than `limit` levels deep in this value (a namespace may
    /// hold itself). Looks no deeper than `limit + 1` levels.
    package func nests(deeperThan limit: Int) -> Bool {
        let children: [JinjaValue]
        switch self {
        case .array(let items): children = items
        case .object(let object): children = object.pairs.map(\.value)
        case .namespace(let namespace): children = namespace.attributes.pairs.map(\.value)
        default: return false
        }
        guard limit > 0 else { return true }
        return children.contains { $0.nests(deeperThan: limit - 1) }
    }

    /// The value as a number when it is one (bools count, as in Python).
    package var numericValue: Double? {
        switch self {
        case .bool(let value): value ? 1 : 0
        case .int(let value): Double(value)
        case .double(let value): value
        default: nil
        }
    }
}

/// Literals for tests and callers. Deliberately not `ExpressibleByNilLiteral`: `nil` would silently turn
/// into Python's None wherever an optional value was meant.
extension JinjaValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByFloatLiteral
{
    package init(stringLiteral value: String) { self = .string(value) }
    package init(integerLiteral value: Int) { self = .int(value) }
    package init(booleanLiteral value: Bool) { self = .bool(value) }
    package init(floatLiteral value: Double) { self = .double(value) }
    package init(arrayLiteral elements: JinjaValue...) { self = .array(elements) }
    package init(dictionaryLiteral elements: (String, JinjaValue)...) { self = .object(JinjaObject(pairs: elements)) }
}
