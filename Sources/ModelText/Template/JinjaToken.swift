/// A token of a Jinja template: raw text, tag delimiters, and the expression tokens inside tags.
package struct JinjaToken: Sendable, Equatable {
    package enum Kind: Sendable, Equatable {
        case text(String)
        case blockStart, blockEnd  // {% %}
        case variableStart, variableEnd  // {{ }}
        case name(String)
        case string(String)
        case integer(Int)
        case float(Double)
        case symbol(String)  // operators and punctuation
        case end
    }

    package var kind: Kind
    package var line: Int
    package var column: Int
}
