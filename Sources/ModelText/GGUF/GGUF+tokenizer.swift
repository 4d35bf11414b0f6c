import Foundation

extension Tokenizer {
    /// The pre-tokenizers (`tokenizer.ggml.pre`) the engine implements, each with the configuration of the
    /// Hugging Face tokenizer it stands for (docs/builtin-engine.md, Tokenizer): the split pattern, NFC,
    /// and whether a whole pre-token found in the vocabulary skips the merges.
    package static let ggufPreTokenizers: [String: (pattern: SplitPattern, nfc: Bool, ignoreMerges: Bool)] = [
        "qwen2": (.qwen2, true, false),
        "llama-bpe": (.llama3, false, true),
    ]

    /// Builds the tokenizer a GGUF file describes in `tokenizer.ggml.*` (docs/design/gguf.md, Tokenizer):
    /// byte-level BPE (`model` gpt2) with the tokens, their types and the merges. Normal tokens form the
    /// vocabulary; control tokens become special added tokens, user-defined tokens plain added tokens.
    /// - Throws: ``TokenizerError`` naming a missing key, a malformed entry or an unsupported tokenizer.
    package convenience init(gguf: GGUFFile) throws {
        let source = gguf.url.lastPathComponent
        func invalid(_ why: String) -> TokenizerError { TokenizerError(.invalidFile, "\(source): \(why)") }
        func strings(_ key: String) throws -> [String] {
            guard let values = gguf.metadata[key]?.array else { throw invalid("no \(key) array") }
            return try values.map { value in
                guard let string = value.string else { throw invalid("\(key) holds a value that is not a string") }
                return string
            }
        }
        let model = gguf.metadata["tokenizer.ggml.model"]?.string ?? "none"
        guard model == "gpt2" else {
            throw TokenizerError(
                .unsupported, "\(source) has a \(model) tokenizer, which this engine does not support (supported: byte-level BPE, gpt2)")
        }
        let preName = gguf.metadata["tokenizer.ggml.pre"]?.string ?? "default"
        guard let pre = Self.ggufPreTokenizers[preName] else {
            let known = Self.ggufPreTokenizers.keys.sorted().joined(separator: ", ")
            throw TokenizerError(.unsupported, "\(source) has pre-tokenizer \(preName), which this engine does not support (supported: \(known))")
        }
        let tokens = try strings("tokenizer.ggml.tokens")
        var types = [Int](repeating: GGUFTokenType.normal, count: tokens.count)
        if let values = gguf.metadata["tokenizer.ggml.token_type"]?.array {
            guard values.count == tokens.count else {
                throw invalid("tokenizer.ggml.token_type has \(values.count) entries for \(tokens.count) tokens")
            }
            types = try values.map { value in
                guard let type = value.int else { throw invalid("tokenizer.ggml.token_type holds a value that is not an integer") }
                return type
            }
        }
        var vocabulary: [[UInt8]: Int] = [:]
        vocabulary.reserveCapacity(tokens.count)
        var added: [AddedToken] = []
        for (id, (token, type)) in zip(tokens, types).enumerated() {
            switch type {
            case GGUFTokenType.normal:
                guard let bytes = ByteLevel.bytes(ofVocabularyString: token) else {
                    throw TokenizerError(.unsupported, "\(source): token \(id) (\(token)) is outside the byte-level alphabet; not a byte-level BPE")
                }
                vocabulary[bytes] = id
            case GGUFTokenType.control, GGUFTokenType.userDefined:
                added.append(AddedToken(id: id, content: token, special: type == GGUFTokenType.control))
            case GGUFTokenType.unknown, GGUFTokenType.unused:
                break
            default:
                throw TokenizerError(.unsupported, "\(source): token \(id) (\(token)) has type \(type), which a byte-level BPE does not use")
            }
        }
        let mergeStrings = try strings("tokenizer.ggml.merges")
        var merges: [([UInt8], [UInt8])] = []
        merges.reserveCapacity(mergeStrings.count)
        for (index, merge) in mergeStrings.enumerated() {
            let parts = merge.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, let left = ByteLevel.bytes(ofVocabularyString: String(parts[0])),
                let right = ByteLevel.bytes(ofVocabularyString: String(parts[1]))
            else {
                throw invalid("merge \(index) (\(merge)) is not two byte-level tokens")
            }
            merges.append((left, right))
        }
        try self.init(
            vocabulary: vocabulary, merges: merges, addedTokens: added, pattern: pre.pattern, normalizesNFC: pre.nfc,
            ignoreMerges: pre.ignoreMerges, unknownID: nil
        )
    }
}

/// The token types of `tokenizer.ggml.token_type` (llama.cpp's numbering).
package enum GGUFTokenType {
    package static let normal = 1
    package static let unknown = 2
    package static let control = 3
    package static let userDefined = 4
    package static let unused = 5
    package static let byte = 6
}
