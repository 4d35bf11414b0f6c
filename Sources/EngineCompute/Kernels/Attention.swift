/// Causal attention of one token's query heads against one KV head's cached keys and values.
///
/// The query heads sharing a KV head (GQA) are computed together so each cached key and value
/// row is read once per group, not once per query head.
package enum Attention {
    /// - Parameters:
    ///   - query: `groupSize` heads of `headDim` floats, already rotated.
    ///   - keys, values: the layer's cache rows; row `t` starts at `t * width + offset`.
    ///   - length: positions to attend to (`position + 1`).
    ///   - scores: scratch of at least `groupSize * length` floats.
    ///   - output: `groupSize` heads of `headDim` floats.
    package static func attend(
        query: UnsafePointer<Float>, groupSize: Int, headDim: Int,
        keys: UnsafePointer<Float16>, values: UnsafePointer<Float16>, width: Int, offset: Int, length: Int,
        scale: Float, scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>
    ) {
        for t in 0..<length {
            let key = UnsafeRawPointer(keys + t * width + offset)
            for head in 0..<groupSize {
                let q = UnsafeRawPointer(query + head * headDim)
                var sum = SIMD8<Float>()
                var i = 0
                while i < headDim {
                    let k = SIMD8<Float>(key.loadUnaligned(fromByteOffset: i * 2, as: SIMD8<Float16>.self))
                    sum = sum.addingProduct(k, q.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
                    i += 8
                }
                scores[head * length + t] = sum.sum() * scale
            }
        }
        for head in 0..<groupSize {
            VectorOps.softmax(scores + head * length, count: length)
        }
        let out = UnsafeMutableRawPointer(output)
        for i in 0..<(groupSize * headDim) { output[i] = 0 }
        for t in 0..<length {
            let value = UnsafeRawPointer(values + t * width + offset)
            for head in 0..<groupSize {
                let p = SIMD8<Float>(repeating: scores[head * length + t])
                var i = 0
                while i < headDim {
                    let v = SIMD8<Float>(value.loadUnaligned(fromByteOffset: i * 2, as: SIMD8<Float16>.self))
                    let at = (head * headDim + i) * 4
                    let acc = out.loadUnaligned(fromByteOffset: at, as: SIMD8<Float>.self)
                    out.storeBytes(of: acc.addingProduct(p, v), toByteOffset: at, as: SIMD8<Float>.self)
                    i += 8
                }
            }
        }
    }
}
