import EngineAVX512
import ModelText
import _Builtin_intrinsics.intel

/// `y[t][n] = bias[n] + Σₖ x[t][k] · W[n][k]` for every token `t`: the projections of a forward pass.
///
/// One pass over the weights serves all tokens of a batch, which is what makes batched decode and
/// prefill cheaper per token than single-sequence decode: weights are read once per row tile and
/// reused for every group of three tokens while they sit in L1/L2.
/// Rows are split between the pool's threads in contiguous chunks.
///
/// - Parameters:
///   - weights: an `[N, K]` matrix; K is a multiple of 8.
///   - x: `tokens` rows of K floats, `xStride` floats apart.
///   - y: `tokens` rows of N floats, `yStride` floats apart.
///   - bias: N floats added to every row, or nil.
///   - accumulate: add the result to `y` instead of overwriting it (a residual connection).
///   - instructionSet: which build of the prefill kernels to use (tests compare them); with
///     ``InstructionSet/amx``, ``InstructionSet/amxBF16`` or the AVX512_BF16 sets, bf16 weights and many tokens
///     use ``AMXMatMul``; block-quantized weights use the VNNI kernels where ``InstructionSet/usesVNNI``.
package func matmul(
    _ weights: WeightMatrix, x: UnsafePointer<Float>, xStride: Int, tokens: Int,
    y: UnsafeMutablePointer<Float>, yStride: Int, bias: UnsafePointer<Float>? = nil, accumulate: Bool = false,
    pool: ThreadPool, instructionSet: InstructionSet = .best
) {
    withActivations(for: [weights], x: x, xStride: xStride, tokens: tokens, instructionSet: instructionSet, pool: pool) { activations, quantized in
        let job = MatMulJob(
            weights: weights, x: x, xStride: xStride, tokens: tokens, y: y, yStride: yStride, bias: bias,
            accumulate: accumulate, instructionSet: instructionSet, amxActivations: activations, quantized: quantized
        )
        pool.forEachRange(weights.rows, alignment: 16) { rows in job.run(rows: rows) }
    }
}

/// One matrix of ``matmul(_:x:xStride:tokens:pool:)``: its rows are written to `y`.
package struct Projection {
    package var weights: WeightMatrix
    package var y: UnsafeMutablePointer<Float>
    package var yStride: Int
    package var bias: UnsafePointer<Float>?

    package init(_ weights: WeightMatrix, y: UnsafeMutablePointer<Float>, yStride: Int, bias: UnsafePointer<Float>? = nil) {
        self.weights = weights
        self.y = y
        self.yStride = yStride
        self.bias = bias
    }
}

/// Several projections of the same activations (attention's q, k and v) as one parallel job:
/// their rows are split between the threads as if the matrices were stacked, so the pool
/// synchronises once instead of once per matrix. The matrices have the same columns.
package func matmul(
    _ projections: [Projection], x: UnsafePointer<Float>, xStride: Int, tokens: Int, pool: ThreadPool,
    instructionSet: InstructionSet = .best
) {
    guard !projections.isEmpty else { return }
    let total = projections.reduce(0) { $0 + $1.weights.rows }
    withActivations(
        for: projections.map(\.weights), x: x, xStride: xStride, tokens: tokens, instructionSet: instructionSet, pool: pool
    ) { activations, quantized in
        pool.forEachRange(total, alignment: 16) { rows in
            var start = 0
            for p in projections {
                let end = start + p.weights.rows
                let lower = max(rows.lowerBound, start), upper = min(rows.upperBound, end)
                if lower < upper {
                    let job = MatMulJob(
                        weights: p.weights, x: x, xStride: xStride, tokens: tokens, y: p.y, yStride: p.yStride, bias: p.bias,
                        accumulate: false, instructionSet: instructionSet, amxActivations: activations, quantized: quantized
                    )
                    job.run(rows: (lower - start)..<(upper - start))
                }
                start = end
            }
        }
    }
}

/// The gated MLP's first half in one parallel job: `gate.y = act(gate) * up` for every token,
/// each thread applying the activation to the rows it has just computed while they are in cache.
/// `up.y` is scratch; both outputs need the same stride.
package func gatedMatmul(
    gate: Projection, up: Projection, x: UnsafePointer<Float>, xStride: Int, tokens: Int, activation: Activation = .silu,
    pool: ThreadPool, instructionSet: InstructionSet = .best
) {
    precondition(gate.weights.rows == up.weights.rows && gate.yStride == up.yStride, "gate and up projections must match")
    withActivations(
        for: [gate.weights, up.weights], x: x, xStride: xStride, tokens: tokens, instructionSet: instructionSet, pool: pool
    ) { activations, quantized in
        let gateJob = MatMulJob(
            weights: gate.weights, x: x, xStride: xStride, tokens: tokens, y: gate.y, yStride: gate.yStride, bias: gate.bias,
            accumulate: false, instructionSet: instructionSet, amxActivations: activations, quantized: quantized
        )
        let upJob = MatMulJob(
            weights: up.weights, x: x, xStride: xStride, tokens: tokens, y: up.y, yStride: up.yStride, bias: up.bias,
            accumulate: false, instructionSet: instructionSet, amxActivations: activations, quantized: quantized
        )
        pool.forEachRange(gate.weights.rows, alignment: 16) { rows in
            gateJob.run(rows: rows)
            upJob.run(rows: rows)
            for t in 0..<tokens {
                let offset = t * gate.yStride + rows.lowerBound
                switch activation {
                case .silu: VectorOps.siluMultiply(gate.y + offset, up.y + offset, count: rows.count)
                case .geluTanh: VectorOps.geluTanhMultiply(gate.y + offset, up.y + offset, count: rows.count)
                }
            }
        }
    }
}

/// Runs `body` with the activations the kernels of `weights` (matrices of the same columns) read besides `x`:
/// converted for AMX tiles when the first is bf16 and the product runs on tiles, quantized to int8 blocks when
/// any is block-quantized.
private func withActivations<R>(
    for weights: [WeightMatrix], x: UnsafePointer<Float>, xStride: Int, tokens: Int, instructionSet: InstructionSet, pool: ThreadPool,
    _ body: (AMXMatMul.Activations?, QuantizedActivations?) -> R
) -> R {
    if weights.contains(where: \.format.isQuantized) {
        let superBlocks = QuantizedMatMul.usesSuperBlocks(weights, tokens: tokens, instructionSet: instructionSet)
        return QuantizedActivations.with(
            x: x, xStride: xStride, tokens: tokens, columns: weights[0].columns, superBlocks: superBlocks, pool: pool
        ) { quantized in
            AMXMatMul.withActivations(for: weights[0], x: x, xStride: xStride, tokens: tokens, instructionSet: instructionSet, pool: pool) {
                body($0, quantized)
            }
        }
    }
    return AMXMatMul.withActivations(for: weights[0], x: x, xStride: xStride, tokens: tokens, instructionSet: instructionSet, pool: pool) {
        body($0, nil)
    }
}

/// How eight consecutive weights are loaded and widened to f32.
private protocol WeightElements {
    static var size: Int { get }
    static func load8(_ base: UnsafeRawPointer, _ index: Int) -> SIMD8<Float>
}

private enum BF16Elements: WeightElements {
    static var size: Int { 2 }
    /// bf16 is the top half of an f32: widen by zero-extending and shifting (`vpmovzxwd`,
    /// `vpslld`), written with the intrinsics because `SIMD8<UInt32>(truncatingIfNeeded:)` can
    /// compile to an out-of-line call.
    @inline(__always)
    static func load8(_ base: UnsafeRawPointer, _ index: Int) -> SIMD8<Float> {
        let half = base.loadUnaligned(fromByteOffset: index &* 2, as: SIMD2<Int64>.self)
        return unsafeBitCast(_mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16), to: SIMD8<Float>.self)
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
    let accumulate: Bool
    let instructionSet: InstructionSet
    /// The activations converted for ``AMXMatMul`` when the product runs on tiles (same columns as
    /// `weights`; used only if they are bf16); nil otherwise.
    let amxActivations: AMXMatMul.Activations?
    /// The activations quantized for block-quantized weights; nil when no weights of the product are.
    let quantized: QuantizedActivations?

    /// Rows per tile: 16 rows of even a 4864-wide bf16 matrix (155 KB) stay in L2 while every
    /// token group passes over them.
    private static let tile = 16
    /// From this many tokens on, a tile is widened to f32 once and every token group reads the
    /// widened copy (``runPacked(rows:_:)``); below it the widening is cheaper done in the kernel.
    private static let packedTokens = 6
    /// Rows and columns of a packed tile: 8 × 1024 f32 (32 KB) sit in L1 while the token groups
    /// pass, and 128 tokens × 1024 activations (512 KB) in L2 while the tiles pass. Long rows also
    /// spread the kernels' horizontal sums over more FMAs.
    private static let packedTile = 8
    private static let block = 1024

    func run(rows: Range<Int>) {
        if weights.format.isQuantized, let quantized {
            QuantizedMatMul.multiply(
                weights, rows: rows, activations: quantized, tokens: tokens, y: y, yStride: yStride, bias: bias, accumulate: accumulate,
                instructionSet: instructionSet
            )
            return
        }
        if let amxActivations, weights.format == .bf16 {
            AMXMatMul.multiply(
                weights, rows: rows, activations: amxActivations, tokens: tokens, y: y, yStride: yStride, bias: bias,
                accumulate: accumulate
            )
            return
        }
        if tokens == 1, weights.format == .bf16 {
            DecodeMatVec.multiply(weights, rows: rows, x: x, y: y, bias: bias, accumulate: accumulate)
            return
        }
        if tokens < DecodeMatVec.fewTokens, weights.format == .bf16, instructionSet != .avx2 {
            DecodeMatVec.multiply(
                weights, rows: rows, x: x, xStride: xStride, tokens: tokens, y: y, yStride: yStride, bias: bias, accumulate: accumulate
            )
            return
        }
        if tokens >= Self.packedTokens, instructionSet != .avx2 {
            let format: PackedMatMul.Format
            switch weights.format {
            case .bf16: format = .bf16
            case .f16: format = .f16
            case .f32: format = .f32
            default: preconditionFailure("block-quantized weights are multiplied above")
            }
            PackedMatMul(
                weights: weights.data, format: format, columns: weights.columns, x: x, xStride: xStride, tokens: tokens,
                y: y, yStride: yStride, bias: bias, accumulate: accumulate
            ).run(rows: rows)
            return
        }
        switch weights.format {
        case .bf16: run(rows: rows, BF16Elements.self)
        case .f16: run(rows: rows, F16Elements.self)
        case .f32: run(rows: rows, F32Elements.self)
        default: preconditionFailure("block-quantized weights are multiplied above")
        }
    }

    @inline(__always)
    private func run<E: WeightElements>(rows: Range<Int>, _: E.Type) {
        if tokens >= Self.packedTokens {
            runPacked(rows: rows, E.self)
            return
        }
        if tokens == 1 {
            for row in rows { kernelRow(row: row, E.self) }
            return
        }
        var tileStart = rows.lowerBound
        while tileStart < rows.upperBound {
            let tileEnd = min(rows.upperBound, tileStart + Self.tile)
            multiply(weights.data, stride: weights.columns, rows: tileStart..<tileEnd, columns: 0..<weights.columns, E.self)
            tileStart = tileEnd
        }
    }

    /// The prefill path: per block of columns and tile of rows, the weights are widened to f32
    /// once into an L1-sized buffer, and the kernels' inner loops are then nothing but loads and
    /// FMAs (the widening's shift competes with FMAs for the same execution ports).
    /// Partial sums of later blocks are added to `y`.
    private func runPacked<E: WeightElements>(rows: Range<Int>, _: E.Type) {
        let k = weights.columns
        withUnsafeTemporaryAllocation(of: Float.self, capacity: Self.packedTile * (Self.block + 16)) { buffer in
            let packed = UnsafeMutableRawPointer(buffer.baseAddress!)
            var blockStart = 0
            while blockStart < k {
                let blockEnd = min(k, blockStart + Self.block)
                // Packed rows one cache line longer than the block: rows 4 KB apart would all fall
                // in the same L1 sets.
                let width = blockEnd - blockStart + 16
                var tileStart = rows.lowerBound
                while tileStart < rows.upperBound {
                    let tileEnd = min(rows.upperBound, tileStart + Self.packedTile)
                    for row in tileStart..<tileEnd {
                        let source = weights.data + row &* k &* E.size
                        let target = packed + (row - tileStart) &* width &* 4
                        var i = blockStart
                        while i < blockEnd {
                            target.storeBytes(of: E.load8(source, i), toByteOffset: (i - blockStart) &* 4, as: SIMD8<Float>.self)
                            i &+= 8
                        }
                    }
                    // The packed tile's rows start at `tileStart`, `width` floats apart.
                    let base = UnsafeRawPointer(packed) - tileStart &* width &* 4 - blockStart &* 4
                    multiply(base, stride: width, rows: tileStart..<tileEnd, columns: blockStart..<blockEnd, F32Elements.self)
                    tileStart = tileEnd
                }
                blockStart = blockEnd
            }
        }
    }

    /// Every token against weight rows `rows`, summing `columns`: tokens in groups of three, then
    /// the rest one by one. Weight row `r` starts at `base + r * stride` elements.
    @inline(__always)
    private func multiply<E: WeightElements>(
        _ base: UnsafeRawPointer, stride: Int, rows: Range<Int>, columns: Range<Int>, _: E.Type
    ) {
        var token = 0
        while token + 3 <= tokens {
            var row = rows.lowerBound
            while row + 4 <= rows.upperBound {
                kernel4x3(base, stride: stride, row: row, token: token, columns: columns, E.self)
                row += 4
            }
            while row < rows.upperBound {
                for t in token..<token + 3 {
                    kernel1x1(base, stride: stride, row: row, token: t, columns: columns, E.self)
                }
                row += 1
            }
            token += 3
        }
        // kernel4x1 does the same FMAs per row in the same order as kernel1x1: results are identical.
        while token < tokens {
            var row = rows.lowerBound
            while row + 4 <= rows.upperBound {
                kernel4x1(base, stride: stride, row: row, token: token, columns: columns, E.self)
                row += 4
            }
            while row < rows.upperBound {
                kernel1x1(base, stride: stride, row: row, token: token, columns: columns, E.self)
                row += 1
            }
            token += 1
        }
    }

    /// Writes one dot product: the first block of columns sets `y` (with the bias), or adds to
    /// it when accumulating; later blocks add to it.
    @inline(__always)
    private func store(_ value: Float, row: Int, token: Int, first: Bool) {
        let index = token &* yStride &+ row
        if !first {
            y[index] += value
        } else if accumulate {
            y[index] += value + (bias?[row] ?? 0)
        } else {
            y[index] = value + (bias?[row] ?? 0)
        }
    }

    /// Four weight rows against three tokens: twelve accumulators, three activation registers and
    /// one weight register fill the sixteen AVX2 registers; each widened weight vector feeds three
    /// FMAs, so loads per FMA drop below the 2×4 shape's.
    ///
    /// Weight row `r` starts at `base + r * stride` elements; `columns` is the range of `k` summed.
    @inline(__always)
    private func kernel4x3<E: WeightElements>(
        _ base: UnsafeRawPointer, stride: Int, row: Int, token: Int, columns: Range<Int>, _: E.Type
    ) {
        let w0 = base + row &* stride &* E.size
        let w1 = w0 + stride &* E.size, w2 = w1 + stride &* E.size, w3 = w2 + stride &* E.size
        let x0 = x + token &* xStride, x1 = x0 + xStride, x2 = x1 + xStride
        var a00 = SIMD8<Float>(), a01 = SIMD8<Float>(), a02 = SIMD8<Float>()
        var a10 = SIMD8<Float>(), a11 = SIMD8<Float>(), a12 = SIMD8<Float>()
        var a20 = SIMD8<Float>(), a21 = SIMD8<Float>(), a22 = SIMD8<Float>()
        var a30 = SIMD8<Float>(), a31 = SIMD8<Float>(), a32 = SIMD8<Float>()
        var i = columns.lowerBound
        while i < columns.upperBound {
            let p0 = load8(x0, i), p1 = load8(x1, i), p2 = load8(x2, i)
            let u0 = E.load8(w0, i)
            a00 = a00.addingProduct(u0, p0)
            a01 = a01.addingProduct(u0, p1)
            a02 = a02.addingProduct(u0, p2)
            let u1 = E.load8(w1, i)
            a10 = a10.addingProduct(u1, p0)
            a11 = a11.addingProduct(u1, p1)
            a12 = a12.addingProduct(u1, p2)
            let u2 = E.load8(w2, i)
            a20 = a20.addingProduct(u2, p0)
            a21 = a21.addingProduct(u2, p1)
            a22 = a22.addingProduct(u2, p2)
            let u3 = E.load8(w3, i)
            a30 = a30.addingProduct(u3, p0)
            a31 = a31.addingProduct(u3, p1)
            a32 = a32.addingProduct(u3, p2)
            i &+= 8
        }
        let first = columns.lowerBound == 0
        store(a00.sum(), row: row, token: token, first: first)
        store(a01.sum(), row: row, token: token + 1, first: first)
        store(a02.sum(), row: row, token: token + 2, first: first)
        store(a10.sum(), row: row + 1, token: token, first: first)
        store(a11.sum(), row: row + 1, token: token + 1, first: first)
        store(a12.sum(), row: row + 1, token: token + 2, first: first)
        store(a20.sum(), row: row + 2, token: token, first: first)
        store(a21.sum(), row: row + 2, token: token + 1, first: first)
        store(a22.sum(), row: row + 2, token: token + 2, first: first)
        store(a30.sum(), row: row + 3, token: token, first: first)
        store(a31.sum(), row: row + 3, token: token + 1, first: first)
        store(a32.sum(), row: row + 3, token: token + 2, first: first)
    }

    /// Four weight rows against one token: the tokens left over from the groups of three.
    @inline(__always)
    private func kernel4x1<E: WeightElements>(
        _ base: UnsafeRawPointer, stride: Int, row: Int, token: Int, columns: Range<Int>, _: E.Type
    ) {
        let w0 = base + row &* stride &* E.size
        let w1 = w0 + stride &* E.size, w2 = w1 + stride &* E.size, w3 = w2 + stride &* E.size
        let x0 = x + token &* xStride
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
        var i = columns.lowerBound
        while i < columns.upperBound {
            let p = load8(x0, i)
            a0 = a0.addingProduct(E.load8(w0, i), p)
            a1 = a1.addingProduct(E.load8(w1, i), p)
            a2 = a2.addingProduct(E.load8(w2, i), p)
            a3 = a3.addingProduct(E.load8(w3, i), p)
            i &+= 8
        }
        let first = columns.lowerBound == 0
        store(a0.sum(), row: row, token: token, first: first)
        store(a1.sum(), row: row + 1, token: token, first: first)
        store(a2.sum(), row: row + 2, token: token, first: first)
        store(a3.sum(), row: row + 3, token: token, first: first)
    }

    /// One weight row against one token, read front to back with four accumulators: the single
    /// sequence decode matvec of f16 and f32 weights (bf16 goes to ``DecodeMatVec``, which sums in
    /// the same order). Rows are consecutive in memory, so a thread's whole share of the matrix is
    /// one sequential stream, the pattern hardware prefetchers follow best.
    @inline(__always)
    private func kernelRow<E: WeightElements>(row: Int, _: E.Type) {
        let k = weights.columns
        let w = weights.data + row &* k &* E.size
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
        var i = 0
        while i + 32 <= k {
            a0 = a0.addingProduct(E.load8(w, i), load8(x, i))
            a1 = a1.addingProduct(E.load8(w, i &+ 8), load8(x, i &+ 8))
            a2 = a2.addingProduct(E.load8(w, i &+ 16), load8(x, i &+ 16))
            a3 = a3.addingProduct(E.load8(w, i &+ 24), load8(x, i &+ 24))
            i &+= 32
        }
        while i < k {
            a0 = a0.addingProduct(E.load8(w, i), load8(x, i))
            i &+= 8
        }
        store(((a0 + a1) + (a2 + a3)).sum(), row: row, token: 0, first: true)
    }

    @inline(__always)
    private func kernel1x1<E: WeightElements>(
        _ base: UnsafeRawPointer, stride: Int, row: Int, token: Int, columns: Range<Int>, _: E.Type
    ) {
        let w0 = base + row &* stride &* E.size
        let x0 = x + token &* xStride
        var a0 = SIMD8<Float>()
        var i = columns.lowerBound
        while i < columns.upperBound {
            a0 = a0.addingProduct(E.load8(w0, i), load8(x0, i))
            i &+= 8
        }
        store(a0.sum(), row: row, token: token, first: columns.lowerBound == 0)
    }
}
