import NIOCore

/// Splits an engine's `text/event-stream` body into event payloads: the `data:` lines of each event, joined
/// by newlines. Chunks may end anywhere, even inside a line; comments and other fields are skipped.
///
/// The one place that splits SSE: the LLM API's streamed replies and the gateway's token count both read
/// engines' streams through it.
struct ServerSentEvents {
    /// An incomplete line longer than this is not an engine's event: readers give up rather than hold more.
    static let maxLineBytes = 1 << 20

    private var pending: [UInt8] = []
    private var lines: [String] = []

    /// The bytes of the incomplete line, held until its newline arrives; readers check it against
    /// ``maxLineBytes``.
    var buffered: Int { pending.count }

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
