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
    /// byte-level BPE (`model` gpt2) with the tokens, their types and the merges, or SentencePiece-style BPE
    /// (`model` llama) with the tokens, their types and scores. Normal tokens form the vocabulary; control tokens
    /// become special added tokens, user-defined tokens plain added tokens.
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
        guard model == "gpt2" || model == "llama" else {
            throw TokenizerError(
                .unsupported,
                "\(source) has a \(model) tokenizer, which this engine does not support (supported: byte-level BPE, gpt2; SentencePiece BPE, llama)")
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
        if model == "llama" {
            try self.init(sentencePiece: gguf, tokens: tokens, types: types, invalid: invalid)
            return
        }
        let preName = gguf.metadata["tokenizer.ggml.pre"]?.string ?? "default"
        guard let pre = Self.ggufPreTokenizers[preName] else {
            let known = Self.ggufPreTokenizers.keys.sorted().joined(separator: ", ")
            throw TokenizerError(.unsupported, "\(source) has pre-tokenizer \(preName), which this engine does not support (supported: \(known))")
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
            vocabulary: vocabulary, merges: merges, addedTokens: added, splitting: .byteLevel(pre.pattern, nfc: pre.nfc),
            ignoreMerges: pre.ignoreMerges, unknownID: nil
        )
    }
}

extension Tokenizer {
    /// SentencePiece BPE as llama.cpp runs it (`tokenizer.ggml.model` llama): a `▁` in front of the text and of
    /// the text after each added token when `tokenizer.ggml.add_space_prefix` (default true), spaces as `▁`, byte
    /// fallback to `<0xNN>` tokens, and merges derived from the scores as transformers' GGUF conversion derives
    /// them: every split of a token into two tokens, ranked by the token's score, highest first (ties: the longer
    /// left piece, then the longer right piece, then token order, then piece ids).
    fileprivate convenience init(sentencePiece gguf: GGUFFile, tokens: [String], types: [Int], invalid: (String) -> TokenizerError) throws {
        guard let values = gguf.metadata["tokenizer.ggml.scores"]?.array, values.count == tokens.count else {
            throw invalid("no tokenizer.ggml.scores array with one score per token")
        }
        let scores = try values.map { value in
            guard let score = value.double else { throw invalid("tokenizer.ggml.scores holds a value that is not a number") }
            return score
        }
        var vocabulary: [[UInt8]: Int] = [:]
        vocabulary.reserveCapacity(tokens.count)
        var added: [AddedToken] = []
        for (id, (token, type)) in zip(tokens, types).enumerated() {
            let bytes = Array(token.utf8)
            if vocabulary[bytes] == nil { vocabulary[bytes] = id }
            if type == GGUFTokenType.control || type == GGUFTokenType.userDefined {
                added.append(AddedToken(id: id, content: token, special: type == GGUFTokenType.control))
            }
        }
        // The scores of tokens spelled twice: the last one's, as a Python dict built in token order keeps.
        var scoreOf: [[UInt8]: Double] = [:]
        for (token, score) in zip(tokens, scores) { scoreOf[Array(token.utf8)] = score }
        struct Candidate {
            var left: [UInt8], right: [UInt8]
            var score: Double
            var leftLength: Int, rightLength: Int
        }
        var candidates: [Candidate] = []
        for (id, token) in tokens.enumerated() where vocabulary[Array(token.utf8)] == id {
            let scalars = Array(token.unicodeScalars)
            var local: [(Candidate, Int, Int)] = []
            for cut in scalars.indices.dropFirst() {
                var left = String.UnicodeScalarView(), right = String.UnicodeScalarView()
                left.append(contentsOf: scalars[..<cut])
                right.append(contentsOf: scalars[cut...])
                let leftBytes = Array(String(left).utf8), rightBytes = Array(String(right).utf8)
                guard let leftID = vocabulary[leftBytes], let rightID = vocabulary[rightBytes] else { continue }
                let candidate = Candidate(
                    left: leftBytes, right: rightBytes, score: scoreOf[Array(token.utf8)] ?? 0, leftLength: cut, rightLength: scalars.count - cut)
                local.append((candidate, leftID, rightID))
            }
            local.sort { ($0.1, $0.2) < ($1.1, $1.2) }
            candidates += local.map(\.0)
        }
        // A stable sort, highest (score, left length, right length) first.
        let order = candidates.indices.sorted { a, b in
            let x = candidates[a], y = candidates[b]
            if x.score != y.score { return x.score > y.score }
            if x.leftLength != y.leftLength { return x.leftLength > y.leftLength }
            if x.rightLength != y.rightLength { return x.rightLength > y.rightLength }
            return a < b
        }
        let spacePrefix = gguf.metadata["tokenizer.ggml.add_space_prefix"]?.bool ?? true
        let space = Array("\u{2581}".utf8)
        var decoding = DecodingRules()
        decoding.replacements = [(space, [0x20])]
        decoding.byteFallback = true
        decoding.stripsLeadingSpaces = spacePrefix ? 1 : 0
        let steps: [SentencePieceText.Step] = (spacePrefix ? [.prepend(space)] : []) + [.replace(pattern: [0x20], content: space)]
        try self.init(
            vocabulary: vocabulary, merges: order.map { (candidates[$0].left, candidates[$0].right) }, addedTokens: added,
            splitting: .sentencePiece(SentencePieceText(steps: steps, metaspace: nil)), ignoreMerges: false,
            unknownID: gguf.metadata["tokenizer.ggml.unknown_token_id"]?.int, byteFallback: true, fusesUnknown: true, decoding: decoding)
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
