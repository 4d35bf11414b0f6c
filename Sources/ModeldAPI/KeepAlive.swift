import FoundationEssentials
import Glibc

/// How long a run stays loaded without requests: `30s`, `5m`, `1h`, `1h30m`, plain seconds, or `never` (also
/// `-1`). `0` unloads a run as soon as its last request ends.
package enum KeepAlive: Sendable, Hashable, CustomStringConvertible {
    case never
    case seconds(Int)

    /// - Returns: nil when the text is none of the forms above.
    package init?(parsing text: String) {
        let trimmed = String(text.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed()).lowercased()
        if trimmed == "never" || trimmed == "-1" {
            self = .never
            return
        }
        if let plain = Int(trimmed) {
            guard plain >= 0 else { return nil }
            self = .seconds(plain)
            return
        }
        let units: [Character: Int] = ["h": 3600, "m": 60, "s": 1]
        var total = 0
        var digits = ""
        var lastUnit = Int.max
        for character in trimmed {
            if character.isASCII, character.isNumber {
                digits.append(character)
            } else if let unit = units[character], let value = Int(digits), unit < lastUnit {
                total += value * unit
                digits = ""
                lastUnit = unit
            } else {
                return nil
            }
        }
        guard digits.isEmpty, lastUnit != Int.max else { return nil }
        self = .seconds(total)
    }

    /// The seconds, or nil for ``never``.
    package var seconds: Int? {
        if case .seconds(let value) = self { value } else { nil }
    }

    package var description: String {
        switch self {
        case .never: "never"
        case .seconds(let value): "\(value)s"
        }
    }
}

/// A `keep_alive` field on the wire: a string (`"10m"`, `"never"`) or a number of seconds (`300`, `-1`).
package struct KeepAliveText: Codable, Sendable, Hashable {
    package var text: String

    package init(_ text: String) { self.text = text }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(Int.self) {
            text = String(number)
        } else {
            text = try container.decode(String.self)
        }
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }
}
