/// A macro defined with `{% macro name(args) %}`.
package struct JinjaMacro: Sendable {
    package var name: String
    package var parameters: [(name: String, defaultValue: JinjaExpression?)]
    package var body: [JinjaNode]
}
