/// The pre-tokenizer regexes of the supported models, matched by hand on Unicode scalars.
///
/// Both patterns are alternations tried left to right at each position (leftmost-first, as Oniguruma
/// does for `tokenizers`):
///
///     (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*
///     |\s*[\r\n]+|\s+(?!\S)|\s+
///
/// Llama 3 differs only in `\p{N}{1,3}`. `\p{L}` is general category L*, `\p{N}` is N*, `\s` is the
/// White_Space property. Together the alternatives cover every scalar, so the whole text is split into
/// consecutive pieces (the `Isolated` behaviour keeps them all).
package struct SplitPattern: Sendable, Equatable {
    /// How many digits one piece may hold: 1 for Qwen2, 3 for Llama 3.
    package var maxDigits: Int

    package static let qwen2 = SplitPattern(maxDigits: 1)
    package static let llama3 = SplitPattern(maxDigits: 3)

    package init(maxDigits: Int) {
        self.maxDigits = maxDigits
    }

    /// The exact `Split` regex strings found in tokenizer.json files, and the pattern each one means.
    package static let known: [String: SplitPattern] = [
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#: .qwen2,
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#: .llama3,
    ]

    /// The character classes the pattern distinguishes.
    package enum CharacterClass: UInt8, Sendable {
        case letter, number, newline, space, other
    }

    private static let asciiClasses: [CharacterClass] = (0..<128).map { value in
        classify(Unicode.Scalar(UInt8(value)))
    }

    /// The class of one scalar. `\r` and `\n` are whitespace too, kept apart because the pattern names them.
    @inline(__always)
    package static func characterClass(_ scalar: Unicode.Scalar) -> CharacterClass {
        scalar.value < 128 ? asciiClasses[Int(scalar.value)] : classify(scalar)
    }

    private static func classify(_ scalar: Unicode.Scalar) -> CharacterClass {
        if scalar == "\r" || scalar == "\n" { return .newline }
        let properties = scalar.properties
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return .number
        default:
            return properties.isWhitespace ? .space : .other
        }
    }

    /// Splits `scalars` into pieces, returned as the ranges of consecutive matches.
    package func split(_ scalars: [Unicode.Scalar]) -> [Range<Int>] {
        let classes = scalars.map(Self.characterClass)
        var pieces: [Range<Int>] = []
        var start = 0
        while start < scalars.count {
            let end = matchEnd(at: start, scalars, classes)
            pieces.append(start..<end)
            start = end
        }
        return pieces
    }

    /// The end of the match starting at `i` (always past `i`).
    private func matchEnd(at i: Int, _ s: [Unicode.Scalar], _ c: [CharacterClass]) -> Int {
        let n = s.count
        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if s[i] == "'" && i + 1 < n {
            let first = Self.folded(s[i + 1])
            if first == "s" || first == "t" || first == "m" || first == "d" { return i + 2 }
            if i + 2 < n {
                let second = Self.folded(s[i + 2])
                if (first == "r" || first == "v") && second == "e" { return i + 3 }
                if first == "l" && second == "l" { return i + 3 }
            }
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if c[i] == .letter {
            return runEnd(from: i + 1, of: .letter, c)
        }
        if c[i] != .newline && c[i] != .number && i + 1 < n && c[i + 1] == .letter {
            return runEnd(from: i + 2, of: .letter, c)
        }
        // \p{N} or \p{N}{1,3}
        if c[i] == .number {
            var end = i + 1
            while end < n && end - i < maxDigits && c[end] == .number { end += 1 }
            return end
        }
        //  ?[^\s\p{L}\p{N}]+[\r\n]*
        let symbolStart = s[i] == " " ? i + 1 : i
        if symbolStart < n && c[symbolStart] == .other {
            let symbolsEnd = runEnd(from: symbolStart + 1, of: .other, c)
            return runEnd(from: symbolsEnd, of: .newline, c)
        }
        // What is left starts with whitespace: find the whole run.
        var runEnd = i
        var lastNewline = -1
        while runEnd < n && (c[runEnd] == .space || c[runEnd] == .newline) {
            if c[runEnd] == .newline { lastNewline = runEnd }
            runEnd += 1
        }
        if runEnd == i {
            // Unreachable for well-formed classes; never loop forever.
            return i + 1
        }
        // \s*[\r\n]+ : backtracking leaves the match just after the run's last newline.
        if lastNewline >= 0 { return lastNewline + 1 }
        // \s+(?!\S) : at the end of the text the whole run; before a non-space, all but its last scalar.
        if runEnd == n { return runEnd }
        if runEnd - i >= 2 { return runEnd - 1 }
        // \s+
        return runEnd
    }

    @inline(__always)
    private func runEnd(from start: Int, of characterClass: CharacterClass, _ c: [CharacterClass]) -> Int {
        var end = start
        while end < c.count && c[end] == characterClass { end += 1 }
        return end
    }

    /// Simple case folding for the contraction letters (`ſ` folds to `s` as it does in Oniguruma).
    private static func folded(_ scalar: Unicode.Scalar) -> Unicode.Scalar {
        switch scalar {
        case "A"..."Z": return Unicode.Scalar(scalar.value + 32)!
        case "\u{17F}": return "s"
        default: return scalar
        }
    }
}
