import ModelText

/// The members of a JSON object, found by one pass over its bytes without decoding the values: each key with
/// where its value lies, so the gateway reads `model` and `stream`, and replaces `model`, leaving every other
/// byte of a request as the client sent it (a decode and re-encode would rewrite numbers such as `0.1`).
///
/// The structure is checked throughout (braces and brackets, keys, colons, commas, literals, the characters of
/// numbers and strings); only the values read are decoded, and keys only when they hold an escape. Nesting
/// deeper than ``JSONLimits/maxDepth`` is refused, and followed without recursion.
struct JSONMembers {
    private let bytes: [UInt8]
    /// Each member's key token (quotes included) and the range of its value, in order.
    private let members: [(key: Range<Int>, value: Range<Int>)]

    /// - Returns: nil unless `bytes` is one JSON object, with nothing but whitespace around it.
    init?(_ bytes: some Collection<UInt8>) {
        self.bytes = Array(bytes)
        var scanner = Scanner(bytes: self.bytes)
        guard let members = scanner.object(), scanner.atEnd else { return nil }
        self.members = members
    }

    /// Each key with its value's range; a repeated key keeps its last value.
    var ranges: [String: Range<Int>] {
        Dictionary(members.map { (Self.decodeString(bytes[$0.key])!, $0.value) }) { _, last in last }
    }

    /// The range of a member's value; the last one when the key repeats.
    private func range(_ key: String) -> Range<Int>? {
        let wanted = key.utf8
        for member in members.reversed() {
            let inner = bytes[(member.key.lowerBound + 1)..<(member.key.upperBound - 1)]
            let same =
                inner.contains(UInt8(ascii: "\\"))
                ? Self.decodeString(bytes[member.key]) == key
                : inner.elementsEqual(wanted)
            if same { return member.value }
        }
        return nil
    }

    /// The raw bytes of a member's value.
    subscript(raw key: String) -> ArraySlice<UInt8>? {
        range(key).map { bytes[$0] }
    }

    /// A member's value when it is a string.
    func string(_ key: String) -> String? {
        guard let range = range(key), bytes[range.lowerBound] == UInt8(ascii: "\"") else { return nil }
        return Self.decodeString(bytes[range])
    }

    /// A member's value when it is `true` or `false`.
    func bool(_ key: String) -> Bool? {
        guard let raw = self[raw: key] else { return nil }
        if raw.elementsEqual("true".utf8) { return true }
        if raw.elementsEqual("false".utf8) { return false }
        return nil
    }

    /// A member's value when it is an integer that fits an `Int`.
    func int(_ key: String) -> Int? {
        self[raw: key].flatMap { Int(String(decoding: $0, as: UTF8.self)) }
    }

    /// A member's value when it is an object.
    func object(_ key: String) -> JSONMembers? {
        self[raw: key].flatMap { JSONMembers($0) }
    }

    /// The document with one member's value replaced by `value` (its JSON text), every other byte kept.
    func replacing(_ key: String, with value: some Collection<UInt8>) -> [UInt8] {
        guard let range = range(key) else { return bytes }
        return Array(bytes[..<range.lowerBound]) + value + bytes[range.upperBound...]
    }

    /// The document with a member set to `value` (its JSON text): its value replaced, or the member added first
    /// when the object has no such key; every other byte kept.
    func setting(_ key: String, to value: some Collection<UInt8>) -> [UInt8] {
        guard range(key) == nil else { return replacing(key, with: value) }
        let open = bytes.firstIndex(of: UInt8(ascii: "{"))!
        let member = Self.encode(key) + [UInt8(ascii: ":")] + value + (members.isEmpty ? [] : [UInt8(ascii: ",")])
        return Array(bytes[...open]) + member + bytes[(open + 1)...]
    }

    /// A string's JSON text: quoted, with `"`, `\` and control characters escaped.
    static func encode(_ string: String) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "\"")]
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), byte]
            case 0x0A: out += Array(#"\n"#.utf8)
            case 0x0D: out += Array(#"\r"#.utf8)
            case 0x09: out += Array(#"\t"#.utf8)
            case ..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += Array(#"\u00"#.utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
        return out
    }

    /// The text of a string token (quotes included), escapes resolved; nil when an escape is malformed.
    static func decodeString(_ token: ArraySlice<UInt8>) -> String? {
        let inner = token.dropFirst().dropLast()
        guard inner.contains(UInt8(ascii: "\\")) else { return String(decoding: inner, as: UTF8.self) }
        var scalars = String.UnicodeScalarView()
        var utf8: [UInt8] = []
        var index = inner.startIndex
        func flush() {
            scalars.append(contentsOf: String(decoding: utf8, as: UTF8.self).unicodeScalars)
            utf8.removeAll()
        }
        func hex4(_ at: Int) -> UInt32? {
            guard at + 4 <= inner.endIndex else { return nil }
            return UInt32(String(decoding: inner[at..<at + 4], as: UTF8.self), radix: 16)
        }
        while index < inner.endIndex {
            let byte = inner[index]
            guard byte == UInt8(ascii: "\\") else {
                utf8.append(byte)
                index += 1
                continue
            }
            guard index + 1 < inner.endIndex else { return nil }
            let escape = inner[index + 1]
            index += 2
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escape)
            case UInt8(ascii: "b"): utf8.append(0x08)
            case UInt8(ascii: "f"): utf8.append(0x0C)
            case UInt8(ascii: "n"): utf8.append(0x0A)
            case UInt8(ascii: "r"): utf8.append(0x0D)
            case UInt8(ascii: "t"): utf8.append(0x09)
            case UInt8(ascii: "u"):
                guard var code = hex4(index) else { return nil }
                index += 4
                if (0xD800..<0xDC00).contains(code), inner[index...].starts(with: Array(#"\u"#.utf8)), let low = hex4(index + 2),
                    (0xDC00..<0xE000).contains(low)
                {
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    index += 6
                }
                flush()
                scalars.append(Unicode.Scalar(code) ?? "\u{FFFD}")
            default: return nil
            }
        }
        flush()
        return String(scalars)
    }
}

/// One pass over a JSON object's bytes.
private struct Scanner {
    let bytes: [UInt8]
    var index = 0

    var atEnd: Bool {
        mutating get {
            skipSpace()
            return index == bytes.count
        }
    }

    mutating func skipSpace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    mutating func take(_ byte: UInt8) -> Bool {
        skipSpace()
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    /// The members of the object that starts here: each key's token and its value's range.
    mutating func object() -> [(key: Range<Int>, value: Range<Int>)]? {
        guard take(UInt8(ascii: "{")) else { return nil }
        var members: [(key: Range<Int>, value: Range<Int>)] = []
        if take(UInt8(ascii: "}")) { return members }
        repeat {
            skipSpace()
            // A key's escapes are checked here, and resolved only when the key is looked up.
            guard let key = string(), !bytes[key].contains(UInt8(ascii: "\\")) || JSONMembers.decodeString(bytes[key]) != nil,
                take(UInt8(ascii: ":"))
            else { return nil }
            skipSpace()
            let start = index
            guard skipValue() else { return nil }
            members.append((key, start..<index))
        } while take(UInt8(ascii: ","))
        return take(UInt8(ascii: "}")) ? members : nil
    }

    /// The range of the string token that starts here, quotes included.
    mutating func string() -> Range<Int>? {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        let start = index
        index += 1
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "\""):
                index += 1
                return start..<index
            case UInt8(ascii: "\\"): index += 2
            case ..<0x20: return nil
            default: index += 1
            }
        }
        return nil
    }

    /// Skips the value that starts here (a member's value, one level inside the object), keeping the brackets
    /// open in a stack rather than recursing.
    mutating func skipValue() -> Bool {
        // The closing bracket of each array and object open inside the value, innermost last.
        var open: [UInt8] = []
        while true {
            guard index < bytes.count else { return false }
            switch bytes[index] {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                // The member's object is the first level.
                guard open.count + 1 < JSONLimits.maxDepth else { return false }
                open.append(bytes[index] == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]"))
                index += 1
                skipSpace()
                if index < bytes.count, bytes[index] == open.last {
                    index += 1
                    open.removeLast()
                } else {
                    guard startItem(in: open.last!) else { return false }
                    continue
                }
            default:
                guard skipScalar() else { return false }
            }
            // A value has ended: close every container it ends, and start the next item of the innermost open one.
            while let close = open.last {
                if take(UInt8(ascii: ",")) {
                    guard startItem(in: close) else { return false }
                    break
                }
                guard take(close) else { return false }
                open.removeLast()
            }
            if open.isEmpty { return true }
        }
    }

    /// Moves to where an item of the container closed by `close` starts: past the key and colon in an object.
    private mutating func startItem(in close: UInt8) -> Bool {
        skipSpace()
        if close == UInt8(ascii: "}") {
            guard string() != nil, take(UInt8(ascii: ":")) else { return false }
            skipSpace()
        }
        return true
    }

    /// Skips the string, literal or number that starts here.
    private mutating func skipScalar() -> Bool {
        switch bytes[index] {
        case UInt8(ascii: "\""):
            return string() != nil
        case UInt8(ascii: "t"): return literal("true")
        case UInt8(ascii: "f"): return literal("false")
        case UInt8(ascii: "n"): return literal("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            // The characters of a number; their order is the engine's to judge.
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "e"),
                    UInt8(ascii: "E"):
                    index += 1
                default: return true
                }
            }
            return true
        default:
            return false
        }
    }

    private mutating func literal(_ word: StaticString) -> Bool {
        let text = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
        guard bytes[index...].starts(with: text) else { return false }
        index += text.count
        return true
    }
}
