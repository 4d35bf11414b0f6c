import ModelText
import Testing

@Suite("Split pattern")
struct SplitPatternTests {
    func pieces(_ text: String, _ pattern: SplitPattern = .qwen2) -> [String] {
        let scalars = Array(text.unicodeScalars)
        return pattern.split(scalars).map { range in
            var view = String.UnicodeScalarView()
            view.append(contentsOf: scalars[range])
            return String(view)
        }
    }

    @Test("contractions, letters, digits, symbols and whitespace runs")
    func basics() {
        #expect(pieces("I'LL go") == ["I", "'LL", " go"])
        #expect(pieces("abc 123") == ["abc", " ", "1", "2", "3"])
        #expect(pieces("abc 123", .llama3) == ["abc", " ", "123"])
        #expect(pieces("12345", .llama3) == ["123", "45"])
        #expect(pieces("a  b") == ["a", " ", " b"])
        #expect(pieces("a \n\n b") == ["a", " \n\n", " b"])
        #expect(pieces("x!!\n\ny") == ["x", "!!\n\n", "y"])
        #expect(pieces("end   ") == ["end", "   "])
    }

    @Test("character classes follow Unicode general categories and White_Space")
    func classes() {
        #expect(SplitPattern.characterClass("é") == .letter)
        #expect(SplitPattern.characterClass("中") == .letter)
        #expect(SplitPattern.characterClass("٣") == .number)
        #expect(SplitPattern.characterClass("½") == .number)
        #expect(SplitPattern.characterClass("\u{301}") == .other)
        #expect(SplitPattern.characterClass("\u{A0}") == .space)
        #expect(SplitPattern.characterClass("\u{3000}") == .space)
        #expect(SplitPattern.characterClass("\u{200B}") == .other)
        #expect(SplitPattern.characterClass("\r") == .newline)
    }
}
