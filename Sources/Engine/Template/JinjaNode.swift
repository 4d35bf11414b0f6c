/// A statement of a parsed template.
package indirect enum JinjaNode: Sendable {
    case text(String)
    case output(JinjaExpression)
    case ifBlock(branches: [(condition: JinjaExpression, body: [JinjaNode])], otherwise: [JinjaNode])
    case forLoop(targets: [String], iterable: JinjaExpression, filter: JinjaExpression?, body: [JinjaNode], otherwise: [JinjaNode])
    /// `{% set a = x %}`, `{% set a, b = x %}`, or `{% set ns.attr = x %}` (`attribute` non-nil).
    case set(targets: [String], attribute: String?, value: JinjaExpression)
    /// `{% set name %}...{% endset %}`.
    case setBlock(name: String, body: [JinjaNode])
    case macro(JinjaMacro)
    case breakLoop
    case continueLoop
    /// transformers' `{% generation %}` marks assistant text for masks; rendering is just its body.
    case generation([JinjaNode])
}

/// An expression, with the line and column of its first token for runtime errors.
package indirect enum JinjaExpression: Sendable {
    case literal(JinjaValue)
    case name(String, line: Int, column: Int)
    case list([JinjaExpression])
    case tuple([JinjaExpression])
    case dictionary([(JinjaExpression, JinjaExpression)])
    case attribute(JinjaExpression, String)
    case item(JinjaExpression, JinjaExpression)
    case slice(JinjaExpression, start: JinjaExpression?, stop: JinjaExpression?, step: JinjaExpression?)
    case call(JinjaExpression, arguments: [JinjaExpression], keywords: [(String, JinjaExpression)], line: Int, column: Int)
    case filter(JinjaExpression, name: String, arguments: [JinjaExpression], keywords: [(String, JinjaExpression)], line: Int, column: Int)
    case test(JinjaExpression, name: String, arguments: [JinjaExpression], negated: Bool, line: Int, column: Int)
    case unary(String, JinjaExpression)
    case binary(String, JinjaExpression, JinjaExpression, line: Int, column: Int)
    case and(JinjaExpression, JinjaExpression)
    case or(JinjaExpression, JinjaExpression)
    case not(JinjaExpression)
    case conditional(then: JinjaExpression, condition: JinjaExpression, otherwise: JinjaExpression?)
}
