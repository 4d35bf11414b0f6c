import CEngineAMX

extension QuantizedActivations {
    /// One token's activations quantized per block of 256 (a k-quant super-block), as llama.cpp's Q8_K does:
    /// `x ≈ d · q` with one `d = max|x| / 127` per block, and the sum of every 16 values of `q`
    /// (`engine_quantize_super_blocks`). Read by ``QuantizedMatMul``'s single-token kernels for Q4_K and Q6_K.
    package struct SuperBlocks {
        /// `columns` int8 values.
        package let values: UnsafeMutablePointer<Int8>
        /// Per block of 256: the scale `d`.
        package let scales: UnsafeMutablePointer<Float>
        /// Per 16 values: `Σq`.
        package let sums: UnsafeMutablePointer<Int16>

        package static let block = 256

        /// `x` (one token, `columns` a multiple of 256) quantized; needs AVX-512. Freed with ``deallocate()``.
        init(_ x: UnsafePointer<Float>, tokens: Int, columns: Int) {
            precondition(tokens == 1 && columns % Self.block == 0, "super-blocks are for one token of whole blocks")
            values = .allocate(capacity: columns)
            scales = .allocate(capacity: columns / Self.block)
            sums = .allocate(capacity: columns / 16)
            engine_quantize_super_blocks(x, columns, values, scales, sums)
        }

        func deallocate() {
            values.deallocate()
            scales.deallocate()
            sums.deallocate()
        }
    }
}

extension QuantizedMatMul {
    /// Whether a product of `weights` (of the same columns) for `tokens` quantizes its activations only as
    /// ``QuantizedActivations/superBlocks``: one token, every weight Q4_K or Q6_K, a CPU with AVX-512 VNNI.
    static func usesSuperBlocks(_ weights: [WeightMatrix], tokens: Int, instructionSet: InstructionSet) -> Bool {
        tokens == 1 && instructionSet.usesVNNI && weights[0].columns % QuantizedActivations.SuperBlocks.block == 0
            && weights.allSatisfy { decodeType($0.format) != nil }
    }

    /// One token's product with Q4_K or Q6_K weights on the kernels of DecodeQuantized.c, which apply the
    /// sub-block scales in integer and one f32 product per 256 elements; false (nothing done) for other formats or
    /// without ``QuantizedActivations/superBlocks``.
    static func decode(
        _ weights: WeightMatrix, rows: Range<Int>, activations a: QuantizedActivations, y: UnsafeMutablePointer<Float>,
        bias: UnsafePointer<Float>?, accumulate: Bool
    ) -> Bool {
        guard let wide = a.superBlocks, let type = decodeType(weights.format) else { return false }
        engine_decode_quantized(
            type, weights.data, weights.columns, rows.lowerBound, rows.upperBound, wide.values, wide.scales, wide.sums, y, bias,
            accumulate ? 1 : 0
        )
        return true
    }

    private static func decodeType(_ format: WeightFormat) -> Int32? {
        switch format {
        case .q4_K: Int32(ENGINE_QUANT_Q4_K)
        case .q6_K: Int32(ENGINE_QUANT_Q6_K)
        default: nil
        }
    }
}
