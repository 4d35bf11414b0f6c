import CEngineAMX

/// The prefill matrix multiply on AMX-BF16 tiles, or with AVX512_BF16's `vdpbf16ps` where the CPU has no AMX
/// (module `CEngineAMX`): bf16 weights times activations converted to bf16, summed in f32.
///
/// Used by ``matmul(_:x:xStride:tokens:y:yStride:bias:accumulate:pool:instructionSet:)`` and the
/// fused projections when the instruction set is ``InstructionSet/amx``, ``InstructionSet/amxBF16``,
/// ``InstructionSet/avx512BF16`` or ``InstructionSet/avx512BF16Rounded``, the weights are bf16 and there
/// are at least ``minimumTokens`` tokens; f16 and f32 weights, and decode, keep the AVX-512/AVX2 kernels and
/// their f32 products.
package enum AMXMatMul {
    /// Whether the CPU has AMX-BF16 and Linux let this process use its tiles (asked once).
    package static let isUsable = amx_bf16_usable() != 0

    /// From this many tokens on, products use the tiles. A 16-token tile is the unit of work, and
    /// packing 16 weight rows into the tile layout costs about as much as one pass of the f32
    /// kernels over them; a single token (decode) is bound by reading the weights anyway.
    package static let minimumTokens = 6

    /// How activations become bf16 for the tiles.
    package enum Precision: Sendable {
        /// Rounded to bf16, to nearest even (8 significant bits): one product per weight.
        case rounded
        /// Split into `bf16(x)` and `bf16(x - bf16(x))` (about 16 significant bits), each
        /// multiplied and the two summed in f32: twice the tile work, within ~1e-5 of f32.
        case split

        var parts: Int32 { self == .rounded ? 1 : 2 }
    }

    /// Which instructions multiply: the tiles, or `vdpbf16ps` on AVX-512 registers (the same activations).
    package enum Kernel: Sendable {
        case tiles
        case dot

        /// Whether this process may use it.
        var isUsable: Bool { self == .tiles ? AMXMatMul.isUsable : InstructionSet.cpuHasAVX512BF16 }
    }

    /// Activations in the tiles' layout, from ``withActivations(x:xStride:tokens:columns:precision:pool:_:)``.
    package struct Activations {
        package let data: UnsafePointer<UInt16>
        package let precision: Precision
        package let kernel: Kernel
    }

    /// The precision `instructionSet` asks for if a product of `tokens` tokens with `weights` uses
    /// the tiles; nil when it does not.
    static func precision(for weights: WeightMatrix, tokens: Int, instructionSet: InstructionSet) -> (Precision, Kernel)? {
        // The instruction set first: with AMX turned off, the CPU is not probed nor the tile permission asked for.
        let precision: Precision, kernel: Kernel
        switch instructionSet {
        case .amx: (precision, kernel) = (.split, .tiles)
        case .amxBF16: (precision, kernel) = (.rounded, .tiles)
        case .avx512BF16: (precision, kernel) = (.split, .dot)
        case .avx512BF16Rounded: (precision, kernel) = (.rounded, .dot)
        case .avx2, .avx512: return nil
        }
        guard weights.format == .bf16, tokens >= minimumTokens, kernel.isUsable else { return nil }
        return (precision, kernel)
    }

    /// Runs `body` with `x` converted for the tiles when they apply to `weights` under
    /// `instructionSet`, else with nil.
    static func withActivations<R>(
        for weights: WeightMatrix, x: UnsafePointer<Float>, xStride: Int, tokens: Int,
        instructionSet: InstructionSet, pool: ThreadPool, _ body: (Activations?) -> R
    ) -> R {
        guard let (precision, kernel) = precision(for: weights, tokens: tokens, instructionSet: instructionSet) else { return body(nil) }
        return withActivations(
            x: x, xStride: xStride, tokens: tokens, columns: weights.columns, precision: precision, kernel: kernel, pool: pool
        ) { body($0) }
    }

    /// Runs `body` with `tokens` rows of `columns` floats from `x` converted to bf16 parts in the
    /// tiles' layout (padded with zeros to 16 tokens and 32 columns), by the pool's threads, for `kernel`.
    /// Only when the kernel ``Kernel/isUsable``.
    package static func withActivations<R>(
        x: UnsafePointer<Float>, xStride: Int, tokens: Int, columns: Int, precision: Precision, kernel: Kernel = .tiles,
        pool: ThreadPool, _ body: (Activations) -> R
    ) -> R {
        precondition(kernel.isUsable, "\(kernel) is not usable in this process")
        let columnBlock = Int(AMX_BF16_COLUMN_BLOCK), tokenBlock = Int(AMX_BF16_TOKEN_BLOCK)
        let padded = (columns + columnBlock - 1) / columnBlock * columnBlock
        let rows = (tokens + tokenBlock - 1) / tokenBlock * tokenBlock
        let count = Int(precision.parts) * rows * padded
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: count * 2, alignment: 64)
        defer { buffer.deallocate() }
        let data = buffer.bindMemory(to: UInt16.self, capacity: count)
        pool.forEachRange(rows) { range in
            amx_bf16_pack_activations(x, xStride, tokens, columns, precision.parts, range.lowerBound, range.upperBound, data)
        }
        return body(Activations(data: data, precision: precision, kernel: kernel))
    }

    /// `y[t][n] (+)= bias[n] + Σₖ a[t][k] · W[n][k]` for weight rows `rows` and every token, on
    /// the calling thread. `weights` are bf16 with the columns the activations were made for.
    package static func multiply(
        _ weights: WeightMatrix, rows: Range<Int>, activations: Activations, tokens: Int,
        y: UnsafeMutablePointer<Float>, yStride: Int, bias: UnsafePointer<Float>?, accumulate: Bool
    ) {
        precondition(weights.format == .bf16, "the AMX kernel reads bf16 weights")
        let multiply = activations.kernel == .tiles ? amx_bf16_matmul : engine_bf16_dot_matmul
        multiply(
            weights.data.assumingMemoryBound(to: UInt16.self), weights.columns, rows.lowerBound, rows.upperBound,
            activations.data, tokens, activations.precision.parts, y, yStride, bias, accumulate ? 1 : 0
        )
    }
}
