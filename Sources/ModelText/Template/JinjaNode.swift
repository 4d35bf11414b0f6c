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
    /// `{% filter name(args) %}...{% endfilter %}`: the body's text run through a filter.
    case filterBlock(name: String, arguments: [JinjaExpression], keywords: [(String, JinjaExpression)], body: [JinjaNode])
    /// transformers' `{% generation %}` marks assistant text for masks; rendering is just its body.
    case generation([JinjaNode])
}
