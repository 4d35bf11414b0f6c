/// An error loading or using a tokenizer, printing as one sentence that says what to do.
package struct TokenizerError: Error, CustomStringConvertible, Equatable {
    /// What went wrong, for callers that branch on it.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        package var description: String { name }

        /// The file is missing, unreadable, or not the JSON shape tokenizer.json has.
        package static let invalidFile = Code("invalid file")
        /// The file uses a tokenizer.json feature this engine does not implement.
        package static let unsupported = Code("unsupported feature")
        /// A token id outside the vocabulary was given to the decoder.
        package static let unknownTokenID = Code("unknown token id")
        /// The text needs a byte the vocabulary cannot represent (no byte-level token and no unk token).
        package static let unencodable = Code("unencodable text")
    }

    package var code: Code
    package var message: String

    package init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    package var description: String { "tokenizer: \(message)" }
}
