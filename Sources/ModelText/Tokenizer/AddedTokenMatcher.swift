/// Finds added tokens in raw text: at each position the longest token starting there, scanning left to
/// right (leftmost-longest, as `tokenizers` matches them before any normalization).
package struct AddedTokenMatcher: Sendable {
    private struct Node: Sendable {
        var children: [UInt8: Int32] = [:]
        var tokenID: Int = -1
    }

    private var nodes: [Node] = [Node()]
    /// Which first bytes can start a token: most positions are rejected with one table lookup.
    private var startsToken = [Bool](repeating: false, count: 256)

    package init(tokens: [(content: String, id: Int)]) {
        for token in tokens where !token.content.isEmpty {
            var node = 0
            for byte in token.content.utf8 {
                if let next = nodes[node].children[byte] {
                    node = Int(next)
                } else {
                    nodes.append(Node())
                    nodes[node].children[byte] = Int32(nodes.count - 1)
                    node = nodes.count - 1
                }
            }
            nodes[node].tokenID = token.id
            startsToken[Int(token.content.utf8.first!)] = true
        }
    }

    /// A span of the text: either plain text to pre-tokenize or one added token.
    package enum Segment: Equatable {
        case text(Range<Int>)
        case token(Int)
    }

    /// Splits UTF-8 `bytes` into plain-text ranges and added tokens.
    package func segments(_ bytes: [UInt8]) -> [Segment] {
        var result: [Segment] = []
        var textStart = 0
        var position = 0
        while position < bytes.count {
            guard startsToken[Int(bytes[position])], let (id, end) = longestMatch(bytes, at: position) else {
                position += 1
                continue
            }
            if textStart < position { result.append(.text(textStart..<position)) }
            result.append(.token(id))
            position = end
            textStart = end
        }
        if textStart < bytes.count { result.append(.text(textStart..<bytes.count)) }
        return result
    }

    private func longestMatch(_ bytes: [UInt8], at start: Int) -> (id: Int, end: Int)? {
        var node = 0
        var best: (id: Int, end: Int)?
        var position = start
        while position < bytes.count, let next = nodes[node].children[bytes[position]] {
            node = Int(next)
            position += 1
            if nodes[node].tokenID >= 0 { best = (nodes[node].tokenID, position) }
        }
        return best
    }
}
