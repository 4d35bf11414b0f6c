import Foundation

/// A byte-level BPE tokenizer loaded from a Hugging Face `tokenizer.json` (Qwen2/Qwen2.5/Qwen3, Llama 3).
///
/// Encoding never adds BOS/EOS or other post-processor tokens: chat templates write those as text, and
/// transformers tokenizes rendered chats with `add_special_tokens=False` too.
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

    package let addedTokens: [AddedToken]
    /// Raw bytes of every id (vocabulary entries decoded from byte-level form, added tokens as UTF-8).
    private let bytesOfID: [[UInt8]?]
    private let specialIDs: Set<Int>
    private let idOfAddedContent: [String: Int]
    private let model: BytePairEncoder
    private let matcher: AddedTokenMatcher
    private let pattern: SplitPattern
    private let normalizesNFC: Bool

    /// The number of merges in the model (a loader that read none would still "work", byte by byte).
    package var mergeCount: Int { model.mergeCount }
    /// One past the highest id.
    package var vocabularySize: Int { bytesOfID.count }

    package init(
        vocabulary: [[UInt8]: Int],
        merges: [([UInt8], [UInt8])],
        addedTokens: [AddedToken],
        pattern: SplitPattern,
        normalizesNFC: Bool,
        ignoreMerges: Bool,
        unknownID: Int?
    ) throws {
        self.model = try BytePairEncoder(vocabulary: vocabulary, merges: merges, ignoreMerges: ignoreMerges, unknownID: unknownID)
        let size = max((vocabulary.values.max() ?? -1), (addedTokens.map(\.id).max() ?? -1)) + 1
        var bytesOfID = [[UInt8]?](repeating: nil, count: size)
        for (bytes, id) in vocabulary { bytesOfID[id] = bytes }
        for token in addedTokens { bytesOfID[token.id] = Array(token.content.utf8) }
        self.bytesOfID = bytesOfID
        self.addedTokens = addedTokens
        self.specialIDs = Set(addedTokens.filter(\.special).map(\.id))
        self.idOfAddedContent = Dictionary(addedTokens.map { ($0.content, $0.id) }, uniquingKeysWith: { first, _ in first })
        self.matcher = AddedTokenMatcher(tokens: addedTokens.map { ($0.content, $0.id) })
        self.pattern = pattern
        self.normalizesNFC = normalizesNFC
    }

    /// The id of an added token such as `<|im_end|>`, or nil.
    package func addedTokenID(_ content: String) -> Int? {
        idOfAddedContent[content]
    }

    /// Whether `id` is a special added token (dropped by `skipSpecialTokens`).
    package func isSpecial(_ id: Int) -> Bool {
        specialIDs.contains(id)
    }

    /// Token ids of `text`: added tokens matched on the raw text first, then NFC (if configured), the
    /// split pattern and byte-level BPE on the text between them.
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
                try encodePlain(bytes[range], into: &ids)
            }
        }
        return ids
    }

    private func encodePlain(_ bytes: ArraySlice<UInt8>, into ids: inout [Int]) throws {
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

    /// The raw bytes of `ids` (special tokens dropped when `skipSpecialTokens`).
    /// - Throws: ``TokenizerError`` for an id outside the vocabulary.
    package func decodeBytes(_ ids: some Sequence<Int>, skipSpecialTokens: Bool = false) throws -> [UInt8] {
        var bytes: [UInt8] = []
        for id in ids {
            if skipSpecialTokens && specialIDs.contains(id) { continue }
            guard id >= 0, id < bytesOfID.count, let tokenBytes = bytesOfID[id] else {
                throw TokenizerError(.unknownTokenID, "token id \(id) is not in the vocabulary (size \(bytesOfID.count))")
            }
            bytes.append(contentsOf: tokenBytes)
        }
        return bytes
    }

    /// The text of `ids`; invalid UTF-8 becomes U+FFFD, as the ByteLevel decoder does.
    package func decode(_ ids: some Sequence<Int>, skipSpecialTokens: Bool = false) throws -> String {
        String(decoding: try decodeBytes(ids, skipSpecialTokens: skipSpecialTokens), as: UTF8.self)
    }

    /// A decoder that turns ids into text one at a time without splitting UTF-8 sequences.
    package func streamingDecoder(skipSpecialTokens: Bool = false) -> StreamingDecoder {
        StreamingDecoder(tokenizer: self, skipSpecialTokens: skipSpecialTokens)
    }
}

extension Tokenizer: CustomStringConvertible {
    package var description: String {
        "Tokenizer(\(vocabularySize) ids, \(mergeCount) merges, \(addedTokens.count) added tokens)"
    }
}
