import Glibc

// Text helpers without Foundation: modelctl links FoundationEssentials only, so it starts without loading
// Foundation and ICU (about 0.1 s of a cold start).

/// Writes a line to standard error.
func printError(_ text: String) {
    var line = Array((text + "\n").utf8)[...]
    while !line.isEmpty {
        let wrote = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
        if wrote < 0 && errno == EINTR { continue }
        guard wrote > 0 else { return }
        line = line.dropFirst(wrote)
    }
}

/// `text` with every UTF-8 byte that `kept` rejects written as `%XX`.
func percentEncoded(_ text: String, keeping kept: (UInt8) -> Bool) -> String {
    let hex = Array("0123456789ABCDEF".utf8)
    var bytes: [UInt8] = []
    for byte in text.utf8 {
        if kept(byte) {
            bytes.append(byte)
        } else {
            bytes += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 15)]]
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Unreserved URL characters (RFC 3986): letters, digits and `-._~`.
func isUnreserved(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
        true
    default:
        "-._~".utf8.contains(byte)
    }
}

/// `value` with `digits` digits after the point.
func fixed(_ value: Double, digits: Int) -> String {
    withVaList([value]) { arguments in
        var buffer = [CChar](repeating: 0, count: 64)
        _ = vsnprintf(&buffer, buffer.count, "%.\(digits)f", arguments)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A number of at least two digits (`05`).
func twoDigits(_ value: Int) -> String {
    value < 10 && value >= 0 ? "0\(value)" : "\(value)"
}
