import NIOCore

/// Splits an engine's `text/event-stream` body into event payloads: the `data:` lines of each event, joined
/// by newlines. Chunks may end anywhere, even inside a line; comments and other fields are skipped.
struct ServerSentEvents {
    private var pending: [UInt8] = []
    private var lines: [String] = []

    /// Adds a chunk of the body. - Returns: the payloads of the events it completed, in order.
    mutating func feed(_ chunk: ByteBuffer) -> [String] {
        pending.append(contentsOf: chunk.readableBytesView)
        var events: [String] = []
        var start = pending.startIndex
        while let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
            var line = pending[start..<newline]
            start = newline + 1
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            if line.isEmpty {
                if !lines.isEmpty {
                    events.append(lines.joined(separator: "\n"))
                    lines.removeAll()
                }
            } else if line.starts(with: "data:".utf8) {
                var value = line.dropFirst(5)
                if value.first == UInt8(ascii: " ") { value = value.dropFirst() }
                lines.append(String(decoding: value, as: UTF8.self))
            }
        }
        pending.removeSubrange(..<start)
        return events
    }
}
