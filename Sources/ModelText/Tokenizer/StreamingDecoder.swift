/// Decodes generated ids one at a time, emitting only complete UTF-8 sequences.
///
/// A token may end in the middle of a character (byte-level BPE splits emoji and CJK across tokens);
/// the incomplete tail is held until the bytes that finish it arrive. Invalid bytes are not held: they
/// come out as U+FFFD straight away, so the concatenated output equals a full ``Tokenizer/decode(_:skipSpecialTokens:)``.
package struct StreamingDecoder: Sendable {
    private let tokenizer: Tokenizer
    private let skipSpecialTokens: Bool
    private var pending: [UInt8] = []
    private var state: DecodingRules.State

    init(tokenizer: Tokenizer, skipSpecialTokens: Bool, state: DecodingRules.State) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
        self.state = state
    }

    /// The text that `id` completes (possibly empty).
    /// - Throws: ``TokenizerError`` for an id outside the vocabulary.
    package mutating func feed(_ id: Int) throws -> String {
        try tokenizer.appendDecoded(id, skipSpecialTokens: skipSpecialTokens, state: &state, to: &pending)
        let complete = Self.completePrefixLength(pending)
        guard complete > 0 else { return "" }
        let text = String(decoding: pending[..<complete], as: UTF8.self)
        pending.removeFirst(complete)
        return text
    }

    /// Whatever is still held (an unfinished sequence at the end of generation), as U+FFFD.
    package mutating func finish() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// The length of the longest prefix that does not end inside a sequence that could still be completed.
    package static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        // Look at most 3 bytes back for the lead byte of the last sequence.
        var index = bytes.count - 1
        var continuations = 0
        while index >= 0 && continuations < 3 && bytes[index] & 0xC0 == 0x80 {
            index -= 1
            continuations += 1
        }
        guard index >= 0 else { return bytes.count }
        let lead = bytes[index]
        let length: Int
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0...0xEF: length = 3
        case 0xF0...0xF4: length = 4
        default: return bytes.count  // ASCII or a byte that can never start a sequence: nothing to wait for.
        }
        guard continuations < length - 1 else { return bytes.count }
        // Hold back only if the partial sequence is a valid beginning (second-byte limits of UTF-8).
        if continuations >= 1 {
            let second = bytes[index + 1]
            let valid: Bool =
                switch lead {
                case 0xE0: second >= 0xA0
                case 0xED: second <= 0x9F
                case 0xF0: second >= 0x90
                case 0xF4: second <= 0x8F
                default: true
                }
            if !valid { return bytes.count }
        }
        return index
    }
}
