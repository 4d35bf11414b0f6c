/// `y[t][n] = bias[n] + Σₖ x[t][k] · W[n][k]` for every token `t`: the projections of a forward pass.
///
/// One pass over the weights serves all tokens of a batch, which is what makes batched decode and
/// prefill cheaper per token than single-sequence decode: weights are read once per row tile and
/// reused for every group of three tokens while they sit in L1/L2.
/// Rows are split between the pool's threads in fixed contiguous partitions.
///
/// - Parameters:
///   - weights: an `[N, K]` matrix; K is a multiple of 8.
///   - x: `tokens` rows of K floats, `xStride` floats apart.
///   - y: `tokens` rows of N floats, `yStride` floats apart.
///   - bias: N floats added to every row, or nil.
package func matmul(
    _ weights: WeightMatrix, x: UnsafePointer<Float>, xStride: Int, tokens: Int,
    y: UnsafeMutablePointer<Float>, yStride: Int, bias: UnsafePointer<Float>? = nil, pool: ThreadPool
) {
    let job = MatMulJob(weights: weights, x: x, xStride: xStride, tokens: tokens, y: y, yStride: yStride, bias: bias)
    pool.forEachRange(weights.rows, alignment: 16) { rows in
        switch weights.format {
        case .bf16: job.run(rows: rows, BF16Elements.self)
        case .f16: job.run(rows: rows, F16Elements.self)
        case .f32: job.run(rows: rows, F32Elements.self)
        }
    }
}

/// How eight consecutive weights are loaded and widened to f32.
private protocol WeightElements {
    static var size: Int { get }
    static func load8(_ base: UnsafeRawPointer, _ index: Int) -> SIMD8<Float>
}

private enum BF16Elements: WeightElements {
    static var size: Int { 2 }
    /// bf16 is the top half of an f32: widen by shifting, no conversion instruction needed.
    @inline(__always)
    static func load8(_ base: UnsafeRawPointer, _ index: Int) -> SIMD8<Float> {
        let half = base.loadUnaligned(fromByteOffset: index &* 2, as: SIMD8<UInt16>.self)
        return unsafeBitCast(SIMD8<UInt32>(truncatingIfNeeded: half) &<< 16, to: SIMD8<Float>.self)
    }
}

private enum F16Elements: WeightElements {
    static var size: Int { 2 }
    /// One `vcvtph2ps` with `-target-cpu haswell` (F16C).
    @inline(__always)
    static func load8(_ base: UnsafeRawPointer, _ index: Int) -> SIMD8<Float> {
        SIMD8<Float>(base.loadUnaligned(fromByteOffset: index &* 2, as: SIMD8<Float16>.self))
    }
}

private enum F32Elements: WeightElements {
    static var size: Int { 4 }
    @inline(__always)
    static func load8(_ base: UnsafeRawPointer, _ index: Int) -> SIMD8<Float> {
        base.loadUnaligned(fromByteOffset: index &* 4, as: SIMD8<Float>.self)
    }
}

@inline(__always)
private func load8(_ x: UnsafePointer<Float>, _ index: Int) -> SIMD8<Float> {
    UnsafeRawPointer(x).loadUnaligned(fromByteOffset: index &* 4, as: SIMD8<Float>.self)
}

private struct MatMulJob {
    let weights: WeightMatrix
    let x: UnsafePointer<Float>
    let xStride: Int
    let tokens: Int
    let y: UnsafeMutablePointer<Float>
    let yStride: Int
    let bias: UnsafePointer<Float>?

    /// Rows per tile: 16 rows of even a 4864-wide bf16 matrix (155 KB) stay in L2 while every
    /// token group passes over them.
    private static let tile = 16

    @inline(__always)
    func run<E: WeightElements>(rows: Range<Int>, _: E.Type) {
        var tileStart = rows.lowerBound
        while tileStart < rows.upperBound {
            let tileEnd = min(rows.upperBound, tileStart + Self.tile)
            var token = 0
            while token + 3 <= tokens {
                var row = tileStart
                while row + 4 <= tileEnd {
                    kernel4x3(row: row, token: token, E.self)
                    row += 4
                }
                while row < tileEnd {
                    for t in token..<token + 3 { kernel1x1(row: row, token: t, E.self) }
                    row += 1
                }
                token += 3
            }
            while token < tokens {
                var row = tileStart
                while row + 4 <= tileEnd {
                    kernel4x1(row: row, token: token, E.self)
                    row += 4
                }
                while row < tileEnd {
                    kernel1x1(row: row, token: token, E.self)
                    row += 1
                }
                token += 1
            }
            tileStart = tileEnd
        }
    }

    @inline(__always)
    private func store(_ value: Float, row: Int, token: Int) {
        y[token &* yStride &+ row] = value + (bias?[row] ?? 0)
    }

    /// Four weight rows against three tokens: twelve accumulators, three activation registers and
    /// one weight register fill the sixteen AVX2 registers; each widened weight vector feeds three
    /// FMAs, so loads per FMA drop below the 2×4 shape's.
    @inline(__always)
    private func kernel4x3<E: WeightElements>(row: Int, token: Int, _: E.Type) {
        let k = weights.columns
        let w0 = weights.data + row &* k &* E.size
        let w1 = w0 + k &* E.size, w2 = w1 + k &* E.size, w3 = w2 + k &* E.size
        let x0 = x + token &* xStride, x1 = x0 + xStride, x2 = x1 + xStride
        var a00 = SIMD8<Float>(), a01 = SIMD8<Float>(), a02 = SIMD8<Float>()
        var a10 = SIMD8<Float>(), a11 = SIMD8<Float>(), a12 = SIMD8<Float>()
        var a20 = SIMD8<Float>(), a21 = SIMD8<Float>(), a22 = SIMD8<Float>()
        var a30 = SIMD8<Float>(), a31 = SIMD8<Float>(), a32 = SIMD8<Float>()
        var i = 0
        while i < k {
            let p0 = load8(x0, i), p1 = load8(x1, i), p2 = load8(x2, i)
            let u0 = E.load8(w0, i)
            a00 = a00.addingProduct(u0, p0); a01 = a01.addingProduct(u0, p1); a02 = a02.addingProduct(u0, p2)
            let u1 = E.load8(w1, i)
            a10 = a10.addingProduct(u1, p0); a11 = a11.addingProduct(u1, p1); a12 = a12.addingProduct(u1, p2)
            let u2 = E.load8(w2, i)
            a20 = a20.addingProduct(u2, p0); a21 = a21.addingProduct(u2, p1); a22 = a22.addingProduct(u2, p2)
            let u3 = E.load8(w3, i)
            a30 = a30.addingProduct(u3, p0); a31 = a31.addingProduct(u3, p1); a32 = a32.addingProduct(u3, p2)
            i &+= 8
        }
        store(a00.sum(), row: row, token: token); store(a01.sum(), row: row, token: token + 1)
        store(a02.sum(), row: row, token: token + 2)
        store(a10.sum(), row: row + 1, token: token); store(a11.sum(), row: row + 1, token: token + 1)
        store(a12.sum(), row: row + 1, token: token + 2)
        store(a20.sum(), row: row + 2, token: token); store(a21.sum(), row: row + 2, token: token + 1)
        store(a22.sum(), row: row + 2, token: token + 2)
        store(a30.sum(), row: row + 3, token: token); store(a31.sum(), row: row + 3, token: token + 1)
        store(a32.sum(), row: row + 3, token: token + 2)
    }

    /// Four weight rows against one token: the decode matvec, bound by memory bandwidth.
    @inline(__always)
    private func kernel4x1<E: WeightElements>(row: Int, token: Int, _: E.Type) {
        let k = weights.columns
        let w0 = weights.data + row &* k &* E.size
        let w1 = w0 + k &* E.size, w2 = w1 + k &* E.size, w3 = w2 + k &* E.size
        let x0 = x + token &* xStride
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
        var i = 0
        while i < k {
            let p = load8(x0, i)
            a0 = a0.addingProduct(E.load8(w0, i), p)
            a1 = a1.addingProduct(E.load8(w1, i), p)
            a2 = a2.addingProduct(E.load8(w2, i), p)
            a3 = a3.addingProduct(E.load8(w3, i), p)
            i &+= 8
        }
        store(a0.sum(), row: row, token: token); store(a1.sum(), row: row + 1, token: token)
        store(a2.sum(), row: row + 2, token: token); store(a3.sum(), row: row + 3, token: token)
    }

    @inline(__always)
    private func kernel1x1<E: WeightElements>(row: Int, token: Int, _: E.Type) {
        let k = weights.columns
        let w0 = weights.data + row &* k &* E.size
        let x0 = x + token &* xStride
        var a0 = SIMD8<Float>()
        var i = 0
        while i < k {
            a0 = a0.addingProduct(E.load8(w0, i), load8(x0, i))
            i &+= 8
        }
        store(a0.sum(), row: row, token: token)
    }
}
