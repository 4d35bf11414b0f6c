/// Turns template source into tokens, applying Jinja's whitespace control the way transformers configures
/// it: `trim_blocks` (drop the newline after a block or comment tag), `lstrip_blocks` (drop spaces and tabs
/// before a block or comment tag at the start of a line), `-` on either side of any tag (drop all
/// whitespace on that side), `+` (keep it), and no trailing newline at the end of the template.
package struct JinjaLexer {
    private let source: [Unicode.Scalar]
    private var position = 0
    private var tokens: [JinjaToken] = []
    /// Line starts, to turn positions into line/column.
    private let lineStarts: [Int]

    package init(_ text: String) {
        var scalars = Array(text.unicodeScalars)
        // keep_trailing_newline=False: a single trailing newline is not part of the template.
        if scalars.last == "\n" { scalars.removeLast() }
        // Jinja normalizes \r\n and \r to \n in template source.
        var normalized: [Unicode.Scalar] = []
        normalized.reserveCapacity(scalars.count)
        var index = 0
        while index < scalars.count {
            if scalars[index] == "\r" {
                normalized.append("\n")
                if index + 1 < scalars.count && scalars[index + 1] == "\n" { index += 1 }
            } else {
                normalized.append(scalars[index])
            }
            index += 1
        }
        source = normalized
        var starts = [0]
        for (offset, scalar) in normalized.enumerated() where scalar == "\n" { starts.append(offset + 1) }
        lineStarts = starts
    }

    private func location(_ offset: Int) -> (line: Int, column: Int) {
        var low = 0
        var high = lineStarts.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if lineStarts[middle] <= offset { low = middle } else { high = middle - 1 }
        }
        return (low + 1, offset - lineStarts[low] + 1)
    }

    private func error(_ message: String, at offset: Int) -> TemplateError {
        let (line, column) = location(offset)
        return TemplateError(.syntax, message, line: line, column: column)
    }

    private mutating func emit(_ kind: JinjaToken.Kind, at offset: Int) {
        let (line, column) = location(offset)
        tokens.append(JinjaToken(kind: kind, line: line, column: column))
    }

    private func starts(with text: String, at offset: Int) -> Bool {
        var index = offset
        for scalar in text.unicodeScalars {
            guard index < source.count, source[index] == scalar else { return false }
            index += 1
        }
        return true
    }

    private static func isSpace(_ scalar: Unicode.Scalar) -> Bool {
        scalar == " " || scalar == "\t" || scalar == "\n" || scalar == "\r" || scalar == "\u{0B}" || scalar == "\u{0C}"
    }

    /// - Throws: ``TemplateError`` with the line and column of an unterminated tag or a bad character.
    package mutating func tokenize() throws -> [JinjaToken] {
        var text: [Unicode.Scalar] = []
        var textStart = 0
        /// Whether the previous tag ended a line (trim_blocks ate its newline), or we are at the start.
        var lineStarting = true
        var stripNextLeading = false

        func flushText(_ lexer: inout JinjaLexer) {
            if !text.isEmpty { lexer.emit(.text(String(String.UnicodeScalarView(text))), at: textStart) }
            text.removeAll()
        }

        while position < source.count {
            let opener: String? =
                starts(with: "{{", at: position) ? "{{" : starts(with: "{%", at: position) ? "{%" : starts(with: "{#", at: position) ? "{#" : nil
            guard let opener else {
                if text.isEmpty { textStart = position }
                if stripNextLeading && Self.isSpace(source[position]) {
                    position += 1
                    continue
                }
                stripNextLeading = false
                text.append(source[position])
                position += 1
                continue
            }
            stripNextLeading = false
            let tagStart = position
            position += 2
            let modifier: Unicode.Scalar? = position < source.count && (source[position] == "-" || source[position] == "+") ? source[position] : nil
            if modifier != nil { position += 1 }
            // Whitespace control on the text before the tag.
            if modifier == "-" {
                while let last = text.last, Self.isSpace(last) { text.removeLast() }
            } else if modifier != "+" && opener != "{{" {
                // lstrip_blocks: only spaces/tabs between the line start and the tag.
                let lineStart = text.lastIndex(of: "\n").map { $0 + 1 }
                if lineStart != nil || lineStarting {
                    let from = lineStart ?? 0
                    if from < text.count && text[from...].allSatisfy({ $0 == " " || $0 == "\t" || $0 == "\u{0B}" || $0 == "\u{0C}" }) {
                        text.removeSubrange(from...)
                    }
                }
            }
            flushText(&self)

            if opener == "{#" {
                guard let close = find("#}", from: position) else { throw error("unterminated comment", at: tagStart) }
                let trimRight = close > position && source[close - 1] == "-"
                let keep = close > position && source[close - 1] == "+"
                position = close + 2
                lineStarting = afterTag(trimRight: trimRight, keepNewline: keep, stripNextLeading: &stripNextLeading)
                continue
            }

            emit(opener == "{{" ? .variableStart : .blockStart, at: tagStart)
            let closer = opener == "{{" ? "}}" : "%}"
            // Expression tokens until the closer.
            while true {
                skipSpaces()
                guard position < source.count else { throw error("unterminated tag \(opener)", at: tagStart) }
                if (source[position] == "-" || source[position] == "+") && starts(with: closer, at: position + 1) {
                    let trimRight = source[position] == "-"
                    let keep = source[position] == "+"
                    emit(opener == "{{" ? .variableEnd : .blockEnd, at: position)
                    position += 3
                    if opener == "{{" {
                        stripNextLeading = trimRight
                        lineStarting = false
                    } else {
                        lineStarting = afterTag(trimRight: trimRight, keepNewline: keep, stripNextLeading: &stripNextLeading)
                    }
                    break
                }
                if starts(with: closer, at: position) {
                    emit(opener == "{{" ? .variableEnd : .blockEnd, at: position)
                    position += 2
                    if opener == "{{" {
                        lineStarting = false
                    } else {
                        lineStarting = afterTag(trimRight: false, keepNewline: false, stripNextLeading: &stripNextLeading)
                    }
                    break
                }
                try lexExpressionToken()
            }
        }
        flushText(&self)
        emit(.end, at: source.count)
        return tokens
    }

    /// After a block or comment tag: `-` strips following whitespace, otherwise trim_blocks drops one
    /// newline. Returns whether the next text starts a line.
    private mutating func afterTag(trimRight: Bool, keepNewline: Bool, stripNextLeading: inout Bool) -> Bool {
        if trimRight {
            stripNextLeading = true
            return false
        }
        if !keepNewline && position < source.count && source[position] == "\n" {
            position += 1
            return true
        }
        return false
    }

    private func find(_ text: String, from offset: Int) -> Int? {
        var index = offset
        while index < source.count {
            if starts(with: text, at: index) { return index }
            index += 1
        }
        return nil
    }

    private mutating func skipSpaces() {
        while position < source.count && Self.isSpace(source[position]) { position += 1 }
    }

    private static let symbols = [
        "**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=",
        "|", ".", ",", ":", "(", ")", "[", "]", "{", "}",
    ]

    private mutating func lexExpressionToken() throws {
        let start = position
        let scalar = source[position]
        if scalar == "_" || scalar.properties.isAlphabetic {
            var name = String.UnicodeScalarView()
            while position < source.count
                && (source[position] == "_" || source[position].properties.isAlphabetic || ("0"..."9").contains(source[position]))
            {
                name.append(source[position])
                position += 1
            }
            emit(.name(String(name)), at: start)
            return
        }
        if ("0"..."9").contains(scalar) {
            var digits = ""
            var isFloat = false
            while position < source.count {
                let c = source[position]
                if ("0"..."9").contains(c) || c == "_" {
                    if c != "_" { digits.unicodeScalars.append(c) }
                } else if c == "." && !isFloat && position + 1 < source.count && ("0"..."9").contains(source[position + 1]) {
                    isFloat = true
                    digits.unicodeScalars.append(c)
                } else if (c == "e" || c == "E") && position + 1 < source.count
                    && (("0"..."9").contains(source[position + 1]) || source[position + 1] == "-" || source[position + 1] == "+")
                {
                    isFloat = true
                    digits.unicodeScalars.append(c)
                    position += 1
                    digits.unicodeScalars.append(source[position])
                } else {
                    break
                }
                position += 1
            }
            if isFloat {
                emit(.float(Double(digits) ?? 0), at: start)
            } else {
                guard let value = Int(digits) else { throw error("integer literal \(digits) is too large", at: start) }
                emit(.integer(value), at: start)
            }
            return
        }
        if scalar == "'" || scalar == "\"" {
            emit(.string(try lexString(quote: scalar)), at: start)
            return
        }
        for symbol in Self.symbols where starts(with: symbol, at: position) {
            position += symbol.unicodeScalars.count
            emit(.symbol(symbol), at: start)
            return
        }
        throw error("unexpected character \(String(scalar).debugDescription)", at: start)
    }

    /// A quoted string with Python's escapes (Jinja decodes literals with `unicode-escape`).
    private mutating func lexString(quote: Unicode.Scalar) throws -> String {
        let start = position
        position += 1
        var value = String.UnicodeScalarView()
        while position < source.count {
            let c = source[position]
            if c == quote {
                position += 1
                return String(value)
            }
            if c == "\\" && position + 1 < source.count {
                let escape = source[position + 1]
                position += 2
                switch escape {
                case "n": value.append("\n")
                case "t": value.append("\t")
                case "r": value.append("\r")
                case "0": value.append("\0")
                case "a": value.append("\u{07}")
                case "b": value.append("\u{08}")
                case "f": value.append("\u{0C}")
                case "v": value.append("\u{0B}")
                case "\\", "'", "\"": value.append(escape)
                case "\n": break
                case "x", "u", "U":
                    let count = escape == "x" ? 2 : escape == "u" ? 4 : 8
                    guard position + count <= source.count,
                        let code = UInt32(String(String.UnicodeScalarView(source[position..<position + count])), radix: 16),
                        let decoded = Unicode.Scalar(code)
                    else { throw error("bad \\\(escape) escape in string", at: position - 2) }
                    value.append(decoded)
                    position += count
                default:
                    // Python keeps unknown escapes as written.
                    value.append("\\")
                    value.append(escape)
                }
                continue
            }
            value.append(c)
            position += 1
        }
        throw error("unterminated string", at: start)
    }
}
