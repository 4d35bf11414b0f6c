import CEngineAMX

/// The single-token (decode) product with bf16 weights, in C (module `CEngineAMX`): the same four
/// f32 accumulators and summation order as the Swift kernel for f16 and f32 weights, so results
/// are bit-identical to it, with software prefetch ahead of the loads, since decode is bound by
/// reading the weights from memory. Batched decode (a few tokens, one per stream) has its own C kernel that reads
/// each weight row once for all of them.
enum DecodeMatVec {
    /// Below this many tokens, bf16 weights on AVX-512 go to ``multiply(_:rows:x:xStride:tokens:y:yStride:bias:accumulate:)``.
    static let fewTokens = 6

    /// `y[n] (+)= bias[n] + Σₖ x[k] · W[n][k]` for weight rows `rows`, on the calling thread.
    static func multiply(
        _ weights: WeightMatrix, rows: Range<Int>, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
        bias: UnsafePointer<Float>?, accumulate: Bool
    ) {
        precondition(weights.format == .bf16, "the decode kernel reads bf16 weights")
        engine_bf16_matvec(
            weights.data.assumingMemoryBound(to: UInt16.self), weights.columns, rows.lowerBound, rows.upperBound, x, y, bias,
            accumulate ? 1 : 0
        )
    }

    /// `y[t][n] (+)= bias[n] + Σₖ x[t][k] · W[n][k]` for weight rows `rows` and `tokens` tokens (fewer than
    /// ``fewTokens``), on the calling thread: weights widened to f32, f32 products. Needs AVX-512.
    static func multiply(
        _ weights: WeightMatrix, rows: Range<Int>, x: UnsafePointer<Float>, xStride: Int, tokens: Int,
        y: UnsafeMutablePointer<Float>, yStride: Int, bias: UnsafePointer<Float>?, accumulate: Bool
    ) {
        precondition(weights.format == .bf16, "the batched decode kernel reads bf16 weights")
        engine_bf16_matmul_few(
            weights.data.assumingMemoryBound(to: UInt16.self), weights.columns, rows.lowerBound, rows.upperBound, x, xStride, tokens,
            y, yStride, bias, accumulate ? 1 : 0
        )
    }
}
