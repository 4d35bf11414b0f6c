import Synchronization

/// Byte-level BPE over a vocabulary keyed by raw bytes: merges applied by rank, lowest first and leftmost
/// on ties (the order of the `tokenizers` heap), with a per-word cache.
package final class BytePairEncoder: Sendable {
    /// Token id of each single byte, or -1 when the vocabulary lacks it.
    private let byteTokens: [Int]
    /// `(left << 32 | right)` -> (rank, merged id).
    private let merges: [UInt64: Merge]
    /// The whole vocabulary, for `ignore_merges` lookups.
    private let vocabulary: [[UInt8]: Int]
    /// Llama 3: a pre-token that is itself in the vocabulary is emitted as is.
    private let ignoreMerges: Bool
    private let unknownID: Int?
    private let cache = Mutex<[[UInt8]: [Int]]>([:])

    /// Words longer than this are not cached (they are rare and would bloat the cache).
    private static let cachedWordLimit = 256
    /// The cache is emptied when it reaches this many words, bounding memory on endless input.
    private static let cacheCapacity = 100_000

    struct Merge: Sendable {
        var rank: Int32
        var id: Int32
    }

    /// The number of merges loaded.
    package var mergeCount: Int { merges.count }

    /// - Parameters:
    ///   - vocabulary: raw bytes of each token -> id.
    ///   - merges: merge pairs in rank order, as raw bytes.
    /// - Throws: ``TokenizerError`` when a merge names a token missing from the vocabulary.
    package init(vocabulary: [[UInt8]: Int], merges pairs: [([UInt8], [UInt8])], ignoreMerges: Bool, unknownID: Int?) throws {
        var byteTokens = [Int](repeating: -1, count: 256)
        for byte in 0..<256 { byteTokens[byte] = vocabulary[[UInt8(byte)]] ?? -1 }
        var merges: [UInt64: Merge] = [:]
        merges.reserveCapacity(pairs.count)
        for (rank, (left, right)) in pairs.enumerated() {
            guard let leftID = vocabulary[left], let rightID = vocabulary[right], let mergedID = vocabulary[left + right] else {
                throw TokenizerError(
                    .invalidFile,
                    "merge \(rank) (\(ByteLevel.vocabularyString(of: left)) \(ByteLevel.vocabularyString(of: right))) names a token missing from the vocabulary"
                )
            }
            let key = UInt64(UInt32(leftID)) << 32 | UInt64(UInt32(rightID))
            // The first (lowest-rank) occurrence of a pair wins, as in `tokenizers`.
            if merges[key] == nil { merges[key] = Merge(rank: Int32(rank), id: Int32(mergedID)) }
        }
        self.byteTokens = byteTokens
        self.merges = merges
        self.vocabulary = vocabulary
        self.ignoreMerges = ignoreMerges
        self.unknownID = unknownID
    }

    /// Appends the ids of one pre-tokenized word (raw bytes) to `ids`.
    package func encode(word: ArraySlice<UInt8>, into ids: inout [Int]) throws {
        let key = Array(word)
        if key.count <= Self.cachedWordLimit, let cached = cache.withLock({ $0[key] }) {
            ids.append(contentsOf: cached)
            return
        }
        let result = try merge(key)
        if key.count <= Self.cachedWordLimit {
            cache.withLock { cache in
                if cache.count >= Self.cacheCapacity { cache.removeAll(keepingCapacity: true) }
                cache[key] = result
            }
        }
        ids.append(contentsOf: result)
    }

    private func merge(_ word: [UInt8]) throws -> [Int] {
        if ignoreMerges, let id = vocabulary[word] { return [id] }
        var symbols: [Int] = []
        symbols.reserveCapacity(word.count)
        for byte in word {
            let id = byteTokens[Int(byte)]
            if id >= 0 {
                symbols.append(id)
            } else if let unknownID {
                symbols.append(unknownID)
            } else {
                throw TokenizerError(.unencodable, "byte 0x\(String(byte, radix: 16)) has no token in the vocabulary and there is no unk_token")
            }
        }
        // Repeatedly merge the lowest-ranked adjacent pair (leftmost on ties). Words are short, so the
        // quadratic scan beats a heap in practice.
        while symbols.count > 1 {
            var bestRank = Int32.max
            var bestIndex = -1
            var bestID: Int32 = 0
            for index in 0..<(symbols.count - 1) {
                let key = UInt64(UInt32(truncatingIfNeeded: symbols[index])) << 32 | UInt64(UInt32(truncatingIfNeeded: symbols[index + 1]))
                if let merge = merges[key], merge.rank < bestRank {
                    bestRank = merge.rank
                    bestIndex = index
                    bestID = merge.id
                }
            }
            if bestIndex < 0 { break }
            symbols[bestIndex] = Int(bestID)
            symbols.remove(at: bestIndex + 1)
        }
        return symbols
    }
}
