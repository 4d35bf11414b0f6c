import ModelText

/// One sequence's keys and values for every layer, stored as f16 (half the memory of f32 and,
/// unlike bf16, precise enough to keep logits within 1e-3 of a float32 reference).
///
/// Layout per layer: `capacity` positions of `kvHeads × headDim` values. Grows by doubling.
/// Not thread-safe: one sequence is driven by one caller at a time.
package final class KVCache: @unchecked Sendable {
    package let layerCount: Int
    /// Values per position per layer: `kvHeadCount × headDim`.
    package let width: Int
    /// Positions stored; the next token goes at position `count`.
    package internal(set) var count = 0
    /// The token of each stored position (a longrope model refills the cache from them: ``TransformerModel``).
    package internal(set) var tokens: [Int32] = []
    /// Whether the stored keys were rotated with longrope's long frequencies.
    var rotatesLong = false
    package private(set) var capacity: Int
    private(set) var keys: [UnsafeMutablePointer<Float16>]
    private(set) var values: [UnsafeMutablePointer<Float16>]

    /// An empty cache shaped for `config`, with room for `capacity` positions before it grows.
    package init(config: ModelConfig, capacity: Int = 256) {
        layerCount = config.layerCount
        width = config.kvHeadCount * config.headDim
        self.capacity = max(1, capacity)
        keys = (0..<layerCount).map { _ in .allocate(capacity: max(1, capacity) * config.kvHeadCount * config.headDim) }
        values = (0..<layerCount).map { _ in .allocate(capacity: max(1, capacity) * config.kvHeadCount * config.headDim) }
    }

    deinit {
        keys.forEach { $0.deallocate() }
        values.forEach { $0.deallocate() }
    }

    /// Bytes held by the cache.
    package var byteCount: Int { 2 * layerCount * capacity * width * MemoryLayout<Float16>.size }

    /// Makes room for `total` positions, keeping what is stored.
    package func reserve(_ total: Int) {
        guard total > capacity else { return }
        var newCapacity = capacity
        while newCapacity < total { newCapacity *= 2 }
        for layer in 0..<layerCount {
            let k = UnsafeMutablePointer<Float16>.allocate(capacity: newCapacity * width)
            let v = UnsafeMutablePointer<Float16>.allocate(capacity: newCapacity * width)
            k.update(from: keys[layer], count: count * width)
            v.update(from: values[layer], count: count * width)
            keys[layer].deallocate()
            values[layer].deallocate()
            keys[layer] = k
            values[layer] = v
        }
        capacity = newCapacity
    }

    /// Forgets every position from `newCount` on (to re-run a suffix, or to reuse the cache).
    package func truncate(to newCount: Int) {
        precondition(newCount >= 0 && newCount <= count, "cannot truncate a cache of \(count) positions to \(newCount)")
        count = newCount
        tokens.removeLast(tokens.count - newCount)
    }
}
