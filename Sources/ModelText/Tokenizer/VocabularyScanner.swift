/// Reads `model.vocab` of a `tokenizer.json` as (piece, id) pairs straight from the file's bytes.
///
/// A Swift dictionary keyed by `String` would merge pieces that are canonically equivalent, since `String`
/// equality is Unicode canonical equivalence: Llama 2's vocabulary holds both U+1F71 and U+03AC (one is the
/// other's canonical decomposition), as separate tokens. The pieces come back as exact scalars.
struct VocabularyScanner {
    private let bytes: [UInt8]
    private var index = 0

    private init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// The pairs of `model.vocab`, in file order, or nil when the file has no such object.
    /// - Throws: ``TokenizerError`` for malformed JSON or an id that is not an integer.
    static func vocabulary(of bytes: [UInt8]) throws -> [(piece: String, id: Int)]? {
        var scanner = VocabularyScanner(bytes)
        return try scanner.member("model") { scanner in
            try scanner.member("vocab") { scanner in try scanner.pairs() }
        }
    }

    private func failure(_ what: String) -> TokenizerError {
        TokenizerError(.invalidFile, "tokenizer.json: \(what) at byte \(index)")
    }

    private mutating func skipSpace() {
        while index < bytes.count, Self.isSpace(bytes[index]) { index += 1 }
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    private mutating func expect(_ byte: UInt8) throws {
        skipSpace()
        guard index < bytes.count, bytes[index] == byte else { throw failure("expected \(Unicode.Scalar(byte))") }
        index += 1
    }

    /// Whether the next byte is `byte` (consumed if so).
    private mutating func consume(_ byte: UInt8) -> Bool {
        skipSpace()
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    /// In the object at the cursor, `read` applied to the value of `key`; nil when the key is absent or the value
    /// is not an object.
    private mutating func member<T>(_ key: String, _ read: (inout VocabularyScanner) throws -> T?) throws -> T? {
        guard consume(UInt8(ascii: "{")) else { return nil }
        if consume(UInt8(ascii: "}")) { return nil }
        repeat {
            let name = try string()
            try expect(UInt8(ascii: ":"))
            skipSpace()
            if name == key, index < bytes.count, bytes[index] == UInt8(ascii: "{") { return try read(&self) }
            try skipValue()
        } while consume(UInt8(ascii: ","))
        try expect(UInt8(ascii: "}"))
        return nil
    }

    private mutating func pairs() throws -> [(piece: String, id: Int)] {
        try expect(UInt8(ascii: "{"))
        var result: [(piece: String, id: Int)] = []
        if consume(UInt8(ascii: "}")) { return result }
        repeat {
            let piece = try string()
            try expect(UInt8(ascii: ":"))
            skipSpace()
            let start = index
            try skipValue()
            guard let id = Int(String(decoding: bytes[start..<index], as: UTF8.self)) else {
                throw failure("vocabulary entry \(piece) has no integer id")
            }
            result.append((piece, id))
        } while consume(UInt8(ascii: ","))
        try expect(UInt8(ascii: "}"))
        return result
    }

    /// A JSON string at the cursor, its escapes decoded (a lone surrogate becomes U+FFFD).
    private mutating func string() throws -> String {
        try expect(UInt8(ascii: "\""))
        var scalars = String.UnicodeScalarView()
        var raw: [UInt8] = []
        func flush() {
            scalars.append(contentsOf: String(decoding: raw, as: UTF8.self).unicodeScalars)
            raw.removeAll(keepingCapacity: true)
        }
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            if byte == UInt8(ascii: "\"") {
                flush()
                return String(scalars)
            }
            guard byte == UInt8(ascii: "\\") else {
                raw.append(byte)
                continue
            }
            guard index < bytes.count else { break }
            let escape = bytes[index]
            index += 1
            switch escape {
            case UInt8(ascii: "b"): raw.append(0x08)
            case UInt8(ascii: "f"): raw.append(0x0C)
            case UInt8(ascii: "n"): raw.append(0x0A)
            case UInt8(ascii: "r"): raw.append(0x0D)
            case UInt8(ascii: "t"): raw.append(0x09)
            case UInt8(ascii: "u"):
                flush()
                var unit = try hex4()
                if (0xD800..<0xDC00).contains(unit), bytes[index...].starts(with: Array("\\u".utf8)) {
                    index += 2
                    let low = try hex4()
                    if (0xDC00..<0xE000).contains(low) {
                        unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        scalars.append("\u{FFFD}")
                        unit = low
                    }
                }
                scalars.append(Unicode.Scalar(unit) ?? "\u{FFFD}")
            default: raw.append(escape)  // \" \\ \/
            }
        }
        throw failure("unterminated string")
    }

    private mutating func hex4() throws -> UInt32 {
        guard index + 4 <= bytes.count, let value = UInt32(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16) else {
            throw failure("bad \\u escape")
        }
        index += 4
        return value
    }

    private mutating func skipValue() throws {
        skipSpace()
        guard index < bytes.count else { throw failure("unexpected end") }
        switch bytes[index] {
        case UInt8(ascii: "\""):
            _ = try string()
        case UInt8(ascii: "{"):
            index += 1
            if consume(UInt8(ascii: "}")) { return }
            repeat {
                _ = try string()
                try expect(UInt8(ascii: ":"))
                try skipValue()
            } while consume(UInt8(ascii: ","))
            try expect(UInt8(ascii: "}"))
        case UInt8(ascii: "["):
            index += 1
            if consume(UInt8(ascii: "]")) { return }
            repeat { try skipValue() } while consume(UInt8(ascii: ","))
            try expect(UInt8(ascii: "]"))
        default:
            let start = index
            while index < bytes.count, !Self.isSpace(bytes[index]), ![UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]")].contains(bytes[index])
            {
                index += 1
            }
            guard index > start else { throw failure("unexpected character") }
        }
    }
}
