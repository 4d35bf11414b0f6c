import Foundation
import ModelText

/// The vocabulary as a byte trie: walking a grammar state down it tests every token at once, each shared prefix
/// once. Special added tokens (end-of-turn and the like) are left out: they are never JSON text.
package final class TokenTrie: Sendable {
    /// Per node, its children at `childBegin[node]..<childBegin[node + 1]` of `childBytes`/`childNodes`.
    let childBegin: [Int32]
    let childBytes: [UInt8]
    let childNodes: [Int32]
    /// Per node, the tokens that end there at `tokenBegin[node]..<tokenBegin[node + 1]` of `tokenIDs`.
    let tokenBegin: [Int32]
    let tokenIDs: [Int32]
    /// The bytes of every id (empty for ids left out).
    let bytesOfID: [[UInt8]]
    /// Per id, what it does inside a string without a pattern: characters begun (-1 when it leaves the string or
    /// cannot be in one) and the escape or UTF-8 state it ends in.
    let stringCharacters: [Int32]
    let stringEnd: [Int32]
    /// The ids that close a string (they hold a quote): tested by walking them.
    let leavingString: [Int32]

    package init(tokenizer: Tokenizer) {
        var bytesOfID = [[UInt8]](repeating: [], count: tokenizer.vocabularySize)
        var entries: [([UInt8], Int32)] = []
        for id in 0..<tokenizer.vocabularySize where !tokenizer.isSpecial(id) {
            guard let bytes = try? tokenizer.decodeBytes([id]), !bytes.isEmpty else { continue }
            bytesOfID[id] = bytes
            entries.append((bytes, Int32(id)))
        }
        entries.sort { $0.0.lexicographicallyPrecedes($1.0) }
        // Breadth first: a node is (range of sorted entries sharing a prefix, prefix length); children are numbered
        // in the order they are queued, so each node's children are contiguous.
        var queue: [(Int, Int, Int)] = [(0, entries.count, 0)]
        var childBegin: [Int32] = []
        var childBytes: [UInt8] = []
        var childNodes: [Int32] = []
        var tokenBegin: [Int32] = []
        var tokenIDs: [Int32] = []
        var head = 0
        while head < queue.count {
            var (low, high, depth) = queue[head]
            head += 1
            tokenBegin.append(Int32(tokenIDs.count))
            while low < high && entries[low].0.count == depth {
                tokenIDs.append(entries[low].1)
                low += 1
            }
            childBegin.append(Int32(childBytes.count))
            while low < high {
                let byte = entries[low].0[depth]
                var end = low + 1
                while end < high && entries[end].0[depth] == byte { end += 1 }
                childBytes.append(byte)
                childNodes.append(Int32(queue.count))
                queue.append((low, end, depth + 1))
                low = end
            }
        }
        childBegin.append(Int32(childBytes.count))
        tokenBegin.append(Int32(tokenIDs.count))
        self.childBegin = childBegin
        self.childBytes = childBytes
        self.childNodes = childNodes
        self.tokenBegin = tokenBegin
        self.tokenIDs = tokenIDs
        self.bytesOfID = bytesOfID
        var stringCharacters = [Int32](repeating: -1, count: bytesOfID.count)
        var stringEnd = [Int32](repeating: 0, count: bytesOfID.count)
        var leavingString: [Int32] = []
        for (id, bytes) in bytesOfID.enumerated() {
            switch JSONMatcher.stringContent(bytes) {
            case .inside(let characters, let end):
                stringCharacters[id] = Int32(characters)
                stringEnd[id] = end
            case .leaves: leavingString.append(Int32(id))
            case .invalid: break
            }
        }
        self.stringCharacters = stringCharacters
        self.stringEnd = stringEnd
        self.leavingString = leavingString
    }

    /// Nodes in the trie.
    var nodeCount: Int { tokenBegin.count - 1 }
}

/// Which tokens may come next: one bit per id.
package struct TokenMask: Sendable, Equatable {
    package private(set) var words: [UInt64]
    package let count: Int

    package init(count: Int) {
        self.count = count
        words = [UInt64](repeating: 0, count: (count + 63) / 64)
    }

    package subscript(id: Int) -> Bool {
        get { id >= 0 && id < count && words[id >> 6] & (1 << UInt64(id & 63)) != 0 }
        set {
            guard id >= 0 && id < count else { return }
            if newValue { words[id >> 6] |= 1 << UInt64(id & 63) } else { words[id >> 6] &= ~(1 << UInt64(id & 63)) }
        }
    }

    package var isEmpty: Bool { words.allSatisfy { $0 == 0 } }
}

/// One request's structured output: the grammar's state after the tokens so far, and the mask of the tokens that
/// may come next.
///
/// A token is allowed when its bytes continue a valid output and the output can still be closed within the tokens
/// left: after it, the fewest bytes that complete the JSON must fit in the remaining budget (each byte is a token
/// of the byte-level vocabulary, so that many tokens always suffice). Masks are cached by grammar state, with the
/// largest closing cost among the allowed tokens, so a cached mask is used only while the budget covers it.
/// Not thread-safe: owned by the generation, used on the scheduler's thread.
package final class JSONConstraint: @unchecked Sendable {
    package let grammar: JSONGrammar
    let vocabulary: TokenTrie
    package private(set) var state: JSONMatcher
    private var cache: [JSONMatcher: (mask: TokenMask, worstClose: Int)] = [:]
    /// Masks kept at most; the cache is cleared when full.
    static let cacheLimit = 256

    package init(grammar: JSONGrammar, vocabulary: TokenTrie) {
        self.grammar = grammar
        self.vocabulary = vocabulary
        state = JSONMatcher(grammar: grammar)
    }

    /// A whole value was generated and nothing may follow: the generation ends.
    package var isComplete: Bool { state.isComplete }
    /// End-of-sequence may come now.
    package var canEnd: Bool { state.canEnd(grammar) }

    /// The text tokens allowed next, when `budget` tokens (this one included) are left; stop tokens are the
    /// caller's, by ``canEnd``.
    package func mask(budget: Int, size: Int) -> TokenMask {
        if let entry = cache[state], entry.mask.count == size, entry.worstClose <= budget - 1 { return entry.mask }
        let (mask, worst) = compute(budget: nil, size: size)
        if worst <= budget - 1 {
            if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }
            cache[state] = (mask, worst)
            return mask
        }
        return compute(budget: budget, size: size).mask
    }

    /// Moves past a chosen token.
    package func accept(_ id: Int32) {
        guard id >= 0, Int(id) < vocabulary.bytesOfID.count else { return }
        state = state.advance(vocabulary.bytesOfID[Int(id)], grammar)
    }

    /// Walks the trie from the current state: the allowed tokens, and the largest closing cost among them.
    /// `fastStrings: false` walks the trie inside strings too (the tests compare both ways).
    func compute(budget: Int?, size: Int, fastStrings: Bool = true) -> (mask: TokenMask, worstClose: Int) {
        var mask = TokenMask(count: size)
        var worst = 0
        let limit = budget.map { $0 - 1 } ?? Int.max
        if fastStrings, let string = state.freeString(grammar) {
            // Inside a free string, a token's fate is precomputed, except for those that close the string.
            let trie = vocabulary
            for id in 0..<min(size, trie.bytesOfID.count) where trie.stringCharacters[id] >= 0 {
                let count = string.count + Int(trie.stringCharacters[id])
                guard count <= string.max else { continue }
                let close = JSONMatcher.utf8Pending(trie.stringEnd[id]) + max(0, string.min - count) + 1 + string.below
                if close <= limit {
                    worst = max(worst, close)
                    mask[id] = true
                }
            }
            for id in trie.leavingString where Int(id) < size {
                let next = state.advance(trie.bytesOfID[Int(id)], grammar)
                guard !next.isDead else { continue }
                let close = next.bytesToClose(grammar)
                if close <= limit {
                    worst = max(worst, close)
                    mask[Int(id)] = true
                }
            }
            return (mask, worst)
        }
        var pending: [(Int32, JSONMatcher)] = [(0, state)]
        let trie = vocabulary
        while let (node, matcher) = pending.popLast() {
            for edge in Int(trie.childBegin[Int(node)])..<Int(trie.childBegin[Int(node) + 1]) {
                let next = matcher.advance(trie.childBytes[edge], grammar)
                if next.isDead { continue }
                let child = Int(trie.childNodes[edge])
                let tokens = Int(trie.tokenBegin[child])..<Int(trie.tokenBegin[child + 1])
                if !tokens.isEmpty {
                    let close = next.bytesToClose(grammar)
                    if close <= limit {
                        worst = max(worst, close)
                        for index in tokens { mask[Int(trie.tokenIDs[index])] = true }
                    }
                }
                if trie.childBegin[child] < trie.childBegin[child + 1] { pending.append((Int32(child), next)) }
            }
        }
        return (mask, worst)
    }
}
