import Foundation

/// `scheme://host:port` of a URL, lower-cased, with the scheme's default port made explicit.
package func originOf(_ url: String) -> String {
    if let origin = plainOrigin(url) { return origin }
    guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
        let host = components.host?.lowercased()
    else { return url }
    let port = components.port ?? (scheme == "https" ? 443 : scheme == "http" ? 80 : 0)
    return "\(scheme)://\(host):\(port)"
}

/// ``originOf(_:)`` of a URL whose authority is a plain ASCII host name or IPv4 address with an optional port
/// (every hub and CDN URL), read without `URLComponents`: its `host` runs the name through ICU's IDNA tables,
/// which maps megabytes of ICU into the daemon on the first download. Nil for anything else (user info, IPv6,
/// percent-escapes, non-ASCII), which goes through `URLComponents` as before.
private func plainOrigin(_ url: String) -> String? {
    let bytes = Array(url.utf8)
    guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")), colon > 0,
        bytes[colon...].starts(with: "://".utf8),
        bytes[..<colon].allSatisfy({ isASCIILetterOrDigit($0) || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }),
        isASCIILetterOrDigit(bytes[0])
    else { return nil }
    let start = colon + 3
    let end = bytes[start...].firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") } ?? bytes.endIndex
    let authority = bytes[start..<end]
    var hostPart = authority
    var port: Int?
    if let portColon = authority.firstIndex(of: UInt8(ascii: ":")) {
        let digits = authority[(portColon + 1)...]
        guard !digits.isEmpty, digits.count <= 5, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let value = Int(String(decoding: digits, as: UTF8.self)), value <= 65535
        else { return nil }
        port = value
        hostPart = authority[..<portColon]
    }
    guard !hostPart.isEmpty, hostPart.allSatisfy({ isASCIILetterOrDigit($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") })
    else { return nil }
    let scheme = String(decoding: bytes[..<colon], as: UTF8.self).lowercased()
    let host = String(decoding: hostPart, as: UTF8.self).lowercased()
    return "\(scheme)://\(host):\(port ?? (scheme == "https" ? 443 : scheme == "http" ? 80 : 0))"
}

private func isASCIILetterOrDigit(_ byte: UInt8) -> Bool {
    (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
        || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
}

/// The host of a URL, for messages.
package func hostOf(_ url: String) -> String {
    URLComponents(string: url)?.host ?? url
}

/// A URL without its query (presigned URLs carry signatures that do not belong in logs).
func redacted(_ url: String) -> String {
    guard var components = URLComponents(string: url) else { return url }
    components.query = nil
    components.user = nil
    components.password = nil
    return components.string ?? url
}

/// Percent-encodes everything but RFC 3986's unreserved characters (a revision is encoded whole).
func percentEncodeWhole(_ text: String) -> String {
    var allowed = CharacterSet()
    allowed.insert(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
}

/// Percent-encodes each path component, keeping the `/` between them.
func percentEncodePath(_ path: String) -> String {
    path.split(separator: "/", omittingEmptySubsequences: false).map { percentEncodeWhole(String($0)) }.joined(separator: "/")
}
