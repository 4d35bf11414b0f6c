/// An error parsing or rendering a chat template, printing as one sentence with the place it happened.
package struct TemplateError: Error, CustomStringConvertible, Equatable {
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        package var description: String { name }

        /// The template text is not valid Jinja.
        package static let syntax = Code("syntax error")
        /// Valid Jinja that this interpreter does not implement (a tag, filter, test or method).
        package static let unsupported = Code("unsupported")
        /// The template failed while rendering (a type error, an undefined value used as a string...).
        package static let runtime = Code("runtime error")
        /// The template called `raise_exception(message)`.
        package static let raised = Code("raised by the template")
        /// No template is configured, or the configuration is malformed.
        package static let missingTemplate = Code("missing template")
        /// JSON input (messages, tools) could not be parsed.
        package static let invalidJSON = Code("invalid JSON")
    }

    package var code: Code
    package var message: String
    /// 1-based line and column in the template source, when known.
    package var line: Int?
    package var column: Int?

    package init(_ code: Code, _ message: String, line: Int? = nil, column: Int? = nil) {
        self.code = code
        self.message = message
        self.line = line
        self.column = column
    }

    package var description: String {
        if let line, let column {
            return "chat template \(code) at line \(line), column \(column): \(message)"
        }
        return "chat template \(code): \(message)"
    }
}
