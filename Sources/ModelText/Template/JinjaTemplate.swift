import Foundation

/// A parsed Jinja template, rendered by our own interpreter.
package struct JinjaTemplate: Sendable {
    package let nodes: [JinjaNode]

    /// - Throws: ``TemplateError`` (`.syntax` or `.unsupported`) with the line and column of the problem.
    package init(_ source: String) throws {
        nodes = try JinjaParser.parse(source)
    }

    /// Renders with `variables` in scope (plus the globals transformers defines).
    package func render(_ variables: [String: JinjaValue], now: Date = Date(), timeZone: TimeZone = .current) throws -> String {
        var interpreter = JinjaInterpreter(variables: variables, now: now, timeZone: timeZone)
        return try interpreter.render(nodes)
    }
}
