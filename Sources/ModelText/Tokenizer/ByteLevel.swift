/// The GPT-2 byte-to-character table that byte-level BPE vocabularies are written in.
///
/// Printable Latin-1 bytes stand for themselves; the other 68 bytes (controls, space, 0x7F-0xA0, 0xAD)
/// map in order to U+0100 and up, so that every vocabulary entry is a printable string.
package enum ByteLevel {
    /// `characterOfByte[b]` is the scalar that stands for byte `b`.
    package static let characterOfByte: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: "\0", count: 256)
        var next: UInt32 = 256
        for byte in 0..<256 {
            let printable = (0x21...0x7E).contains(byte) || (0xA1...0xAC).contains(byte) || (0xAE...0xFF).contains(byte)
            if printable {
                table[byte] = Unicode.Scalar(UInt32(byte))!
            } else {
                table[byte] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// The inverse table, indexed by scalar value (all values are below 0x144).
    private static let byteOfCharacter: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x200)
        for (byte, scalar) in characterOfByte.enumerated() { table[Int(scalar.value)] = Int16(byte) }
        return table
    }()

    /// The raw bytes a vocabulary string stands for, or nil when it holds a character outside the table
    /// (such entries are not byte-level tokens: added tokens are kept as their UTF-8 text instead).
    package static func bytes(ofVocabularyString string: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(string.utf8.count)
        for scalar in string.unicodeScalars {
            guard scalar.value < 0x200 else { return nil }
            let byte = byteOfCharacter[Int(scalar.value)]
            guard byte >= 0 else { return nil }
            bytes.append(UInt8(byte))
        }
        return bytes
    }

    /// The vocabulary string for raw bytes (used in error messages and tests).
    package static func vocabularyString(of bytes: some Sequence<UInt8>) -> String {
        var result = String.UnicodeScalarView()
        for byte in bytes { result.append(characterOfByte[Int(byte)]) }
        return String(result)
    }
}
