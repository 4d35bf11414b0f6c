import Synchronization

/// BPE over a vocabulary keyed by raw bytes: merges applied by rank, lowest first and leftmost on ties (the
/// order of the `tokenizers` heap), with a per-word cache.
///
/// A word starts as one symbol per byte (byte-level BPE) or per character (SentencePiece-style BPE, where a
/// character missing from the vocabulary falls back to its `<0xNN>` byte tokens, or to the unknown token).
package final class BytePairEncoder: Sendable {
    /// What the symbols of a word are before any merge.
    package enum Alphabet: Sendable {
        /// One symbol per byte (byte-level vocabularies hold all 256).
        case bytes
        /// One symbol per UTF-8 character; `byteFallback` maps each byte to its `<0xNN>` token's id, if the
        /// model has `byte_fallback`.
        case characters(byteFallback: [Int]?)
    }

    private let alphabet: Alphabet
    /// Token id of each single byte, or -1 when the vocabulary lacks it.
    private let byteTokens: [Int]
    /// `(left << 32 | right)` -> (rank, merged id).
    private let merges: [UInt64: Merge]
    /// The whole vocabulary, for `ignore_merges` lookups.
    private let vocabulary: [[UInt8]: Int]
    /// Llama 3: a pre-token that is itself in the vocabulary is emitted as is.
    private let ignoreMerges: Bool
    private let unknownID: Int?
    /// `fuse_unk`: consecutive unknown symbols become one.
    private let fusesUnknown: Bool
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
    package init(
        vocabulary: [[UInt8]: Int], merges pairs: [([UInt8], [UInt8])], alphabet: Alphabet = .bytes, ignoreMerges: Bool, unknownID: Int?,
        fusesUnknown: Bool = false
    ) throws {
        var byteTokens = [Int](repeating: -1, count: 256)
        for byte in 0..<256 { byteTokens[byte] = vocabulary[[UInt8(byte)]] ?? -1 }
        var merges: [UInt64: Merge] = [:]
        merges.reserveCapacity(pairs.count)
        for (rank, (left, right)) in pairs.enumerated() {
            guard let leftID = vocabulary[left], let rightID = vocabulary[right], let mergedID = vocabulary[left + right] else {
                let names = [left, right].map { bytes in
                    if case .bytes = alphabet { ByteLevel.vocabularyString(of: bytes) } else { String(decoding: bytes, as: UTF8.self) }
                }
                throw TokenizerError(.invalidFile, "merge \(rank) (\(names[0]) \(names[1])) names a token missing from the vocabulary")
            }
            let key = Self.key(leftID, rightID)
            // The first (lowest-rank) occurrence of a pair wins, as in `tokenizers`.
            if merges[key] == nil { merges[key] = Merge(rank: Int32(rank), id: Int32(mergedID)) }
        }
        self.alphabet = alphabet
        self.byteTokens = byteTokens
        self.fusesUnknown = fusesUnknown
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
        var symbols = try initialSymbols(word)
        guard symbols.count > 1 else { return symbols }
        // The `tokenizers` algorithm: a heap of candidate merges ordered by (rank, position); symbols form a
        // linked list, and an entry whose pair has changed since it was pushed is skipped.
        var next = Array(1...symbols.count)
        next[symbols.count - 1] = -1
        var previous = Array(-1..<(symbols.count - 1))
        var alive = [Bool](repeating: true, count: symbols.count)
        var heap = MergeHeap()
        func push(_ index: Int) {
            let right = next[index]
            guard right >= 0, let merge = merges[Self.key(symbols[index], symbols[right])] else { return }
            heap.push(MergeHeap.Entry(rank: merge.rank, position: Int32(index), id: merge.id))
        }
        for index in 0..<(symbols.count - 1) { push(index) }
        while let top = heap.pop() {
            let index = Int(top.position)
            let right = next[index]
            guard alive[index], right >= 0, merges[Self.key(symbols[index], symbols[right])]?.id == top.id else { continue }
            symbols[index] = Int(top.id)
            alive[right] = false
            next[index] = next[right]
            if next[right] >= 0 { previous[next[right]] = index }
            if previous[index] >= 0 { push(previous[index]) }
            push(index)
        }
        return symbols.indices.filter { alive[$0] }.map { symbols[$0] }
    }

    private static func key(_ left: Int, _ right: Int) -> UInt64 {
        UInt64(UInt32(truncatingIfNeeded: left)) << 32 | UInt64(UInt32(truncatingIfNeeded: right))
    }

    /// The word's symbols before merging: bytes, or characters with byte fallback; unknown ones as the unk token.
    private func initialSymbols(_ word: [UInt8]) throws -> [Int] {
        var symbols: [Int] = []
        symbols.reserveCapacity(word.count)
        var lastWasUnknown = false
        func unknown(_ bytes: ArraySlice<UInt8>) throws {
            guard let unknownID else {
                let hex = bytes.map { "0x" + String($0, radix: 16) }.joined(separator: " ")
                throw TokenizerError(.unencodable, "\(hex) has no token in the vocabulary and there is no unk_token")
            }
            if !(fusesUnknown && lastWasUnknown) { symbols.append(unknownID) }
            lastWasUnknown = true
        }
        switch alphabet {
        case .bytes:
            for (index, byte) in word.enumerated() {
                let id = byteTokens[Int(byte)]
                if id >= 0 {
                    symbols.append(id)
                    lastWasUnknown = false
                } else {
                    try unknown(word[index...index])
                }
            }
        case .characters(let byteFallback):
            var start = 0
            while start < word.count {
                let end = min(word.count, start + Self.sequenceLength(word[start]))
                let character = word[start..<end]
                if let id = vocabulary[Array(character)] {
                    symbols.append(id)
                    lastWasUnknown = false
                } else if let byteFallback, character.allSatisfy({ byteFallback[Int($0)] >= 0 }) {
                    symbols.append(contentsOf: character.map { byteFallback[Int($0)] })
                    lastWasUnknown = false
                } else {
                    try unknown(character)
                }
                start = end
            }
        }
        return symbols
    }

    /// The length of the UTF-8 sequence a lead byte starts (1 for a stray continuation byte).
    private static func sequenceLength(_ lead: UInt8) -> Int {
        switch lead {
        case 0xF0...: 4
        case 0xE0...: 3
        case 0xC0...: 2
        default: 1
        }
    }
}

/// A binary min-heap of candidate merges, lowest rank first and leftmost on ties.
private struct MergeHeap {
    struct Entry {
        var rank: Int32
        var position: Int32
        var id: Int32

        func precedes(_ other: Entry) -> Bool {
            rank != other.rank ? rank < other.rank : position < other.position
        }
    }

    private var entries: [Entry] = []

    mutating func push(_ entry: Entry) {
        entries.append(entry)
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].precedes(entries[parent]) else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Entry? {
        guard let top = entries.first else { return nil }
        let last = entries.removeLast()
        guard !entries.isEmpty else { return top }
        entries[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var best = parent
            if left < entries.count, entries[left].precedes(entries[best]) { best = left }
            if right < entries.count, entries[right].precedes(entries[best]) { best = right }
            guard best != parent else { return top }
            entries.swapAt(parent, best)
            parent = best
        }
    }
}
