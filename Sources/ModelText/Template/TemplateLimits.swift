/// The bounds on what a chat template may do. Templates come from a hub and are not trusted: a template that
/// would overflow the stack or fill memory fails with a ``TemplateError`` that names the limit instead.
package enum TemplateLimits {
    /// Levels of nesting the parser follows (64): brackets, operators chained in one expression
    /// (`a + b + c` is two levels), filters and tests, and block tags (`if`, `for`, `macro`...) inside one another.
    /// Real templates nest a dozen at most.
    package static let maxNesting = 64
    /// Macro calls and loops open at once while rendering (100, counting the two outermost scopes): a recursive
    /// macro that does not end fails here.
    package static let maxCallDepth = 100
    /// Arrays and objects inside one another in a value a template builds or prints (64, as for JSON input).
    package static let maxValueDepth = JSONLimits.maxDepth
    /// Loop iterations in one render, every loop counted (1,000,000). `range` alone is limited to 100,000
    /// items, as Jinja's sandbox does, but loops nest.
    package static let maxIterations = 1_000_000
    /// The longest string a render makes, the rendered text included: 64 MiB of UTF-8 (twice the largest
    /// request body).
    package static let maxStringBytes = 64 << 20
    /// The longest list a render makes: 16 Mi items.
    package static let maxListItems = 16 << 20

    /// The error for a render that passes a limit.
    static func exceeded(_ what: String) -> TemplateError {
        TemplateError(.runtime, "the template \(what)")
    }
}
