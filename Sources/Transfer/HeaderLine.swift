import FoundationEssentials
import Glibc

/// Folds one header line from libcurl's header callback into `headers` (names lower-cased; a repeated
/// header keeps its last value). A status line (`HTTP/...`) starts a new response — after a 100 Continue or
/// a redirect — so it clears what was collected.
func collectHeaderLine(_ data: UnsafeMutablePointer<CChar>, count: Int, into headers: inout [String: String]) {
    let line = String(decoding: UnsafeRawBufferPointer(start: data, count: count), as: UTF8.self)
    if line.hasPrefix("HTTP/") {
        headers = [:]
    } else if let colon = line.firstIndex(of: ":") {
        headers[trimmingWhitespace(line[..<colon]).lowercased()] = trimmingWhitespace(line[line.index(after: colon)...])
    }
}

/// Text without the white space (line ends included) around it.
package func trimmingWhitespace(_ text: Substring) -> String {
    String(text.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
}
