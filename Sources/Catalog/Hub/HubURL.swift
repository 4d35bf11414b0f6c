import Foundation

/// `scheme://host:port` of a URL, lower-cased, with the scheme's default port made explicit.
package func originOf(_ url: String) -> String {
    guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
        let host = components.host?.lowercased()
    else { return url }
    let port = components.port ?? (scheme == "https" ? 443 : scheme == "http" ? 80 : 0)
    return "\(scheme)://\(host):\(port)"
}

/// The host of a URL, for messages.
func hostOf(_ url: String) -> String {
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
