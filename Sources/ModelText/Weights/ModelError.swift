/// An error loading or running a model, printing as one sentence that says what to do.
package struct ModelError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is; extensible without breaking callers that switch on it.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        package let rawValue: String
        package init(_ rawValue: String) { self.rawValue = rawValue }
        package var description: String { rawValue }

        /// A file is missing or cannot be read or mapped.
        package static let unreadableFile = Code("unreadable file")
        /// A safetensors header is malformed or inconsistent with the file.
        package static let invalidSafetensors = Code("invalid safetensors")
        /// A GGUF file's header is malformed or inconsistent with the file.
        package static let invalidGGUF = Code("invalid GGUF")
        /// `config.json` or `generation_config.json` is malformed.
        package static let invalidConfig = Code("invalid config")
        /// The architecture or one of its options is not implemented by this engine.
        package static let unsupportedArchitecture = Code("unsupported architecture")
        /// A tensor the architecture needs is absent or has the wrong shape or dtype.
        package static let invalidTensor = Code("invalid tensor")
    }

    package var code: Code
    package var message: String
    package var cause: (any Error)?

    package init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    package var description: String {
        if let cause { return "\(message) (\(cause))" }
        return message
    }
}
