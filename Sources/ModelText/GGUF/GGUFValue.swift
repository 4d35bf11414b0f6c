/// A metadata value of a GGUF file. Integers of every width are kept apart from floats, and arrays hold
/// one element type (docs/design/gguf.md, Metadata).
package enum GGUFValue: Sendable, Equatable {
    case unsigned(UInt64)
    case signed(Int64)
    case float(Double)
    case bool(Bool)
    case string(String)
    case array([GGUFValue])

    /// An integer value (of any width and signedness) as `Int`, or nil.
    package var int: Int? {
        switch self {
        case .unsigned(let value): Int(exactly: value)
        case .signed(let value): Int(exactly: value)
        default: nil
        }
    }

    /// A float or integer value as `Double`, or nil.
    package var double: Double? {
        switch self {
        case .float(let value): value
        case .unsigned(let value): Double(value)
        case .signed(let value): Double(value)
        default: nil
        }
    }

    package var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    package var bool: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    package var array: [GGUFValue]? {
        if case .array(let value) = self { return value }
        return nil
    }
}
