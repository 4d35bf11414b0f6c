import ModelText

/// A layer's feed-forward block: `down(act(gate(x)) · up(x))`, SwiGLU or GeGLU by ``activation``.
///
/// The layer calls it through ``run(x:xStride:tokens:y:yStride:accumulate:scratch:pool:instructionSet:)`` only,
/// so another kind of block can take its place beside it; ``ExpertFeedForward``'s experts are such MLPs too.
struct GatedMLP {
    var gate: WeightMatrix, up: WeightMatrix, down: WeightMatrix
    var gateBias: UnsafePointer<Float>? = nil, upBias: UnsafePointer<Float>? = nil, downBias: UnsafePointer<Float>? = nil
    var activation: Activation

    var intermediateSize: Int { gate.rows }

    /// Writes (or, with `accumulate`, adds) the block's output for `tokens` rows of `x` to `y`. `scratch` holds
    /// two buffers of `tokens × intermediateSize` floats.
    func run(
        x: UnsafePointer<Float>, xStride: Int, tokens: Int, y: UnsafeMutablePointer<Float>, yStride: Int, accumulate: Bool,
        scratch: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>), pool: ThreadPool, instructionSet: InstructionSet
    ) {
        let inter = intermediateSize
        gatedMatmul(
            gate: Projection(gate, y: scratch.0, yStride: inter, bias: gateBias),
            up: Projection(up, y: scratch.1, yStride: inter, bias: upBias),
            x: x, xStride: xStride, tokens: tokens, activation: activation, pool: pool, instructionSet: instructionSet
        )
        matmul(
            down, x: scratch.0, xStride: inter, tokens: tokens, y: y, yStride: yStride, bias: downBias, accumulate: accumulate,
            pool: pool, instructionSet: instructionSet
        )
    }
}
