import Foundation

/// A BPE tokenizer loaded from a Hugging Face `tokenizer.json` or a GGUF file: byte-level (Qwen2/Qwen2.5/Qwen3,
/// Llama 3) or SentencePiece-style with byte fallback (Llama 2, Mistral, Gemma).
///
/// ``encode(_:)`` never adds BOS/EOS or other post-processor tokens: chat templates write those as text, and
/// transformers tokenizes rendered chats with `add_special_tokens=False` too. ``encodeWithSpecialTokens(_:)``
/// adds them, for embeddings.
package final class Tokenizer: Sendable {
    /// An added token from the `added_tokens` list.
    package struct AddedToken: Sendable, Equatable {
        package var id: Int
        package var content: String
        /// Only decides whether decoding with `skipSpecialTokens` drops it.
        package var special: Bool

        package init(id: Int, content: String, special: Bool) {
            self.id = id
            self.content = content
            self.special = special
        }
    }

    /// How the text between added tokens becomes words for the BPE model.
    package enum Splitting: Sendable {
        /// Byte-level: NFC if set, the split regex, each piece as raw bytes.
        case byteLevel(SplitPattern, nfc: Bool)
        /// SentencePiece-style: normalizers and `Metaspace` (spaces as `▁`).
        case sentencePiece(SentencePieceText)
    }

    /// The special tokens the post-processor puts around a single text (`TemplateProcessing`), for callers that
    /// encode raw text the way `tokenizer(text)` does in transformers (embeddings).
    package struct SpecialTokenTemplate: Sendable, Equatable {
        package var prefix: [Int] = []
        package var suffix: [Int] = []

        package init(prefix: [Int] = [], suffix: [Int] = []) {
            self.prefix = prefix
            self.suffix = suffix
        }
    }

    package let addedTokens: [AddedToken]
    package let specialTokenTemplate: SpecialTokenTemplate
    /// The bytes each id decodes to (byte-level entries as raw bytes, SentencePiece pieces through the
    /// decoder's `Replace` and `ByteFallback`, added tokens as UTF-8).
    private let bytesOfID: [[UInt8]?]
    private let specialIDs: Set<Int>
    private let idOfAddedContent: [String: Int]
    private let model: BytePairEncoder
    private let matcher: AddedTokenMatcher
    private let splitting: Splitting
    private let decoding: DecodingRules

    /// The number of merges in the model (a loader that read none would still "work", byte by byte).
    package var mergeCount: Int { model.mergeCount }
    /// One past the highest id.
    package var vocabularySize: Int { bytesOfID.count }

    /// - Parameters:
    ///   - vocabulary: each token's bytes (raw bytes for byte-level BPE, the piece's UTF-8 otherwise) -> id.
    ///   - decoding: the decoder; SentencePiece pieces and added tokens go through its `Replace`/`ByteFallback`.
    package init(
        vocabulary: [[UInt8]: Int],
        merges: [([UInt8], [UInt8])],
        addedTokens: [AddedToken],
        splitting: Splitting,
        ignoreMerges: Bool,
        unknownID: Int?,
        byteFallback: Bool = false,
        fusesUnknown: Bool = false,
        decoding: DecodingRules = DecodingRules(),
        specialTokenTemplate: SpecialTokenTemplate = SpecialTokenTemplate()
    ) throws {
        let alphabet: BytePairEncoder.Alphabet
        switch splitting {
        case .byteLevel: alphabet = .bytes
        case .sentencePiece:
            var table: [Int]?
            if byteFallback {
                table = (0..<256).map { byte in vocabulary[Array(String(format: "<0x%02X>", byte).utf8)] ?? -1 }
            }
            alphabet = .characters(byteFallback: table)
        }
        self.model = try BytePairEncoder(
            vocabulary: vocabulary, merges: merges, alphabet: alphabet, ignoreMerges: ignoreMerges, unknownID: unknownID,
            fusesUnknown: fusesUnknown)
        let size = max((vocabulary.values.max() ?? -1), (addedTokens.map(\.id).max() ?? -1)) + 1
        var bytesOfID = [[UInt8]?](repeating: nil, count: size)
        for (bytes, id) in vocabulary {
            if case .byteLevel = splitting { bytesOfID[id] = bytes } else { bytesOfID[id] = decoding.bytes(ofPiece: bytes) }
        }
        for token in addedTokens { bytesOfID[token.id] = decoding.bytes(ofPiece: Array(token.content.utf8)) }
        self.bytesOfID = bytesOfID
        self.addedTokens = addedTokens
        self.specialIDs = Set(addedTokens.filter(\.special).map(\.id))
        self.idOfAddedContent = Dictionary(addedTokens.map { ($0.content, $0.id) }, uniquingKeysWith: { first, _ in first })
        self.matcher = AddedTokenMatcher(tokens: addedTokens.map { ($0.content, $0.id) })
        self.splitting = splitting
        self.decoding = decoding
        self.specialTokenTemplate = specialTokenTemplate
    }

    /// The id of an added token such as `<|im_end|>`, or nil.
    package func addedTokenID(_ content: String) -> Int? {
        idOfAddedContent[content]
    }

    /// Whether `id` is a special added token (dropped by `skipSpecialTokens`).
    package func isSpecial(_ id: Int) -> Bool {
        specialIDs.contains(id)
    }

    /// Token ids of `text`: added tokens matched on the raw text first, then the text between them split
    /// into words (``Splitting``) and each word through BPE.
    /// - Throws: ``TokenizerError`` only when a byte has no token and there is no unk token.
    package func encode(_ text: String) throws -> [Int] {
        let bytes = Array(text.utf8)
        var ids: [Int] = []
        ids.reserveCapacity(bytes.count / 3)
        for segment in matcher.segments(bytes) {
            switch segment {
            case .token(let id):
                ids.append(id)
            case .text(let range):
                try encodePlain(bytes[range], atStart: range.lowerBound == 0, into: &ids)
            }
        }
        return ids
    }

    /// Token ids of `text` with the post-processor's special tokens around them (``specialTokenTemplate``).
    package func encodeWithSpecialTokens(_ text: String) throws -> [Int] {
        specialTokenTemplate.prefix + (try encode(text)) + specialTokenTemplate.suffix
    }

    private func encodePlain(_ bytes: ArraySlice<UInt8>, atStart: Bool, into ids: inout [Int]) throws {
        let pattern: SplitPattern, normalizesNFC: Bool
        switch splitting {
        case .byteLevel(let split, let nfc): (pattern, normalizesNFC) = (split, nfc)
        case .sentencePiece(let text):
            for word in text.words(bytes, atStart: atStart) { try model.encode(word: word[...], into: &ids) }
            return
        }
        var text = String(decoding: bytes, as: UTF8.self)
        if normalizesNFC && !bytes.allSatisfy({ $0 < 0x80 }) {
            text = text.precomposedStringWithCanonicalMapping
        }
        let scalars = Array(text.unicodeScalars)
        var word: [UInt8] = []
        for piece in pattern.split(scalars) {
            word.removeAll(keepingCapacity: true)
            for scalar in scalars[piece] { word.append(contentsOf: UTF8.encode(scalar)!) }
            try model.encode(word: word[...], into: &ids)
        }
    }

    /// The bytes each of `ids` stands for, concatenated (special tokens dropped when `skipSpecialTokens`);
    /// what a token adds to a text, without the decoder's rules for the start of the text.
    /// - Throws: ``TokenizerError`` for an id outside the vocabulary.
    package func decodeBytes(_ ids: some Sequence<Int>, skipSpecialTokens: Bool = false) throws -> [UInt8] {
        var bytes: [UInt8] = []
        for id in ids {
            if skipSpecialTokens && specialIDs.contains(id) { continue }
            bytes.append(contentsOf: try tokenBytes(id))
        }
        return bytes
    }

    /// The bytes of one id.
    /// - Throws: ``TokenizerError`` for an id outside the vocabulary.
    private func tokenBytes(_ id: Int) throws -> [UInt8] {
        guard id >= 0, id < bytesOfID.count, let tokenBytes = bytesOfID[id] else {
            throw TokenizerError(.unknownTokenID, "token id \(id) is not in the vocabulary (size \(bytesOfID.count))")
        }
        return tokenBytes
    }

    /// Appends the bytes of `id` to the text decoded so far, applying the decoder's rules for the start of the
    /// text; a skipped special token adds nothing.
    func appendDecoded(_ id: Int, skipSpecialTokens: Bool, state: inout DecodingRules.State, to output: inout [UInt8]) throws {
        if skipSpecialTokens && specialIDs.contains(id) { return }
        decoding.append(try tokenBytes(id), state: &state, to: &output)
    }

    /// The text of `ids`; invalid UTF-8 becomes U+FFFD.
    package func decode(_ ids: some Sequence<Int>, skipSpecialTokens: Bool = false) throws -> String {
        var state = DecodingRules.State(decoding)
        var bytes: [UInt8] = []
        for id in ids { try appendDecoded(id, skipSpecialTokens: skipSpecialTokens, state: &state, to: &bytes) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A decoder that turns ids into text one at a time without splitting UTF-8 sequences.
    package func streamingDecoder(skipSpecialTokens: Bool = false) -> StreamingDecoder {
        StreamingDecoder(tokenizer: self, skipSpecialTokens: skipSpecialTokens, state: DecodingRules.State(decoding))
    }
}

extension Tokenizer: CustomStringConvertible {
    package var description: String {
        "Tokenizer(\(vocabularySize) ids, \(mergeCount) merges, \(addedTokens.count) added tokens)"
    }
}
