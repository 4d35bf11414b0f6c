import Foundation

/// How SentencePiece-style BPE tokenizers (Llama 2, Mistral, Gemma) turn the text between added tokens into
/// words: normalizer steps (`Prepend`, `Replace`, `NFC`, in order), then optionally the `Metaspace`
/// pre-tokenizer. Words are UTF-8 with spaces written as `▁`, which the vocabulary holds as text.
///
/// Everything works on bytes: a pattern that is valid UTF-8 can only match at character boundaries.
package struct SentencePieceText: Sendable {
    /// One normalizer of the `tokenizer.json` normalizer (or of its `Sequence`).
    package enum Step: Sendable, Equatable {
        /// `Replace` with a string pattern: every occurrence, left to right.
        case replace(pattern: [UInt8], content: [UInt8])
        /// `Prepend`: put in front of any non-empty text.
        case prepend([UInt8])
        /// `NFC`.
        case nfc
    }

    /// The `Metaspace` pre-tokenizer.
    package struct Metaspace: Sendable, Equatable {
        /// When a `▁` goes in front of the text (if it does not start with one already).
        package enum PrependScheme: String, Sendable {
            /// Every stretch of text.
            case always
            /// Only the stretch at the very start of the input (not one after an added token).
            case first
            /// Never.
            case never
        }

        package var replacement: [UInt8]
        package var prependScheme: PrependScheme
        /// Whether each `▁` starts a new word (`MergedWithNext`); otherwise the whole stretch is one word.
        package var split: Bool

        package init(replacement: [UInt8], prependScheme: PrependScheme, split: Bool) {
            self.replacement = replacement
            self.prependScheme = prependScheme
            self.split = split
        }
    }

    package var steps: [Step]
    package var metaspace: Metaspace?

    package init(steps: [Step], metaspace: Metaspace?) {
        self.steps = steps
        self.metaspace = metaspace
    }

    /// The words of one stretch of text between added tokens; `atStart` says whether it begins the input.
    package func words(_ text: ArraySlice<UInt8>, atStart: Bool) -> [[UInt8]] {
        var bytes = Array(text)
        for step in steps {
            switch step {
            case .replace(let pattern, let content): bytes = Self.replacing(pattern, with: content, in: bytes)
            case .prepend(let prefix): if !bytes.isEmpty { bytes = prefix + bytes }
            case .nfc:
                if !bytes.allSatisfy({ $0 < 0x80 }) {
                    bytes = Array(String(decoding: bytes, as: UTF8.self).precomposedStringWithCanonicalMapping.utf8)
                }
            }
        }
        guard let metaspace else { return bytes.isEmpty ? [] : [bytes] }
        bytes = Self.replacing([0x20], with: metaspace.replacement, in: bytes)
        let prepends =
            switch metaspace.prependScheme {
            case .always: true
            case .first: atStart
            case .never: false
            }
        if prepends && !bytes.starts(with: metaspace.replacement) { bytes = metaspace.replacement + bytes }
        guard metaspace.split else { return bytes.isEmpty ? [] : [bytes] }
        // MergedWithNext: each `▁` begins a word.
        var words: [[UInt8]] = []
        var start = 0
        var index = 0
        while index < bytes.count {
            if index > start, bytes[index...].starts(with: metaspace.replacement) {
                words.append(Array(bytes[start..<index]))
                start = index
            }
            index += bytes[index...].starts(with: metaspace.replacement) ? metaspace.replacement.count : 1
        }
        if start < bytes.count { words.append(Array(bytes[start...])) }
        return words
    }

    /// `bytes` with every non-overlapping occurrence of `pattern` (scanning left to right) replaced.
    static func replacing(_ pattern: [UInt8], with content: [UInt8], in bytes: [UInt8]) -> [UInt8] {
        guard let first = pattern.first, bytes.contains(first) else { return bytes }
        var result: [UInt8] = []
        result.reserveCapacity(bytes.count + bytes.count / 2)
        var index = 0
        while index < bytes.count {
            if bytes[index] == first, bytes[index...].starts(with: pattern) {
                result.append(contentsOf: content)
                index += pattern.count
            } else {
                result.append(bytes[index])
                index += 1
            }
        }
        return result
    }
}

/// The decoder of a `tokenizer.json`: per token, `Replace` steps and `ByteFallback` (`<0xNN>` is byte NN),
/// which ``Tokenizer`` applies once to every vocabulary entry; then, at the start of the text, the `Strip` after
/// `Fuse` of Llama 2-style decoders, or the `Metaspace` decoder's first token, which loses its `▁`s instead of
/// turning them into spaces. The byte-level decoder is the identity on the vocabulary's raw bytes.
package struct DecodingRules: Sendable, Equatable {
    /// `Replace` steps with string patterns, in order.
    package var replacements: [(pattern: [UInt8], content: [UInt8])] = []
    /// `ByteFallback`: a `<0xNN>` token stands for byte NN.
    package var byteFallback = false
    /// Leading spaces removed from the whole text (`Strip` with `start`).
    package var stripsLeadingSpaces = 0
    /// The first token's spaces (its `▁`s) are dropped.
    package var dropsFirstTokenSpaces = false

    package init() {}

    package static func == (a: DecodingRules, b: DecodingRules) -> Bool {
        a.replacements.elementsEqual(b.replacements, by: { $0.pattern == $1.pattern && $0.content == $1.content })
            && a.byteFallback == b.byteFallback && a.stripsLeadingSpaces == b.stripsLeadingSpaces
            && a.dropsFirstTokenSpaces == b.dropsFirstTokenSpaces
    }

    /// The bytes one token decodes to, from its text in the vocabulary.
    package func bytes(ofPiece piece: [UInt8]) -> [UInt8] {
        if byteFallback, let byte = Self.fallbackByte(piece) { return [byte] }
        return replacements.reduce(piece) { bytes, step in SentencePieceText.replacing(step.pattern, with: step.content, in: bytes) }
    }

    /// NN of a `<0xNN>` piece (two hex digits), or nil.
    package static func fallbackByte(_ piece: [UInt8]) -> UInt8? {
        guard piece.count == 6, piece.starts(with: Array("<0x".utf8)), piece[5] == UInt8(ascii: ">") else { return nil }
        return UInt8(String(decoding: piece[3..<5], as: UTF8.self), radix: 16)
    }

    /// Where a decode is: how many tokens came out, how many leading spaces may still be stripped.
    package struct State: Sendable {
        var tokens = 0
        var spacesToStrip: Int

        package init(_ rules: DecodingRules) {
            spacesToStrip = rules.stripsLeadingSpaces
        }
    }

    /// Appends one token's bytes to `output`, applying the rules at the start of the text.
    func append(_ tokenBytes: [UInt8], state: inout State, to output: inout [UInt8]) {
        defer { state.tokens += 1 }
        var bytes = tokenBytes[...]
        var filtered: [UInt8] = []
        if dropsFirstTokenSpaces && state.tokens == 0 {
            filtered = bytes.filter { $0 != 0x20 }
            bytes = filtered[...]
        }
        while state.spacesToStrip > 0, let first = bytes.first {
            if first == 0x20 {
                bytes = bytes.dropFirst()
                state.spacesToStrip -= 1
            } else {
                state.spacesToStrip = 0
            }
        }
        output.append(contentsOf: bytes)
    }
}
