import CEngineAMX

/// The single-token (decode) product with bf16 weights, in C (module `CEngineAMX`): the same four
/// f32 accumulators and summation order as the Swift kernel for f16 and f32 weights, so results
/// are bit-identical to it, with software prefetch ahead of the loads, since decode is bound by
/// reading the weights from memory.
enum DecodeMatVec {
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
}
