import CEngineAMX
import ModelText
import _Builtin_intrinsics.intel

/// Activations quantized per block of 32 to int8 with an f32 scale, as llama.cpp's Q8_0 does, for the integer
/// dot products of ``QuantizedMatMul``: `x ≈ d · q`, `q = round(x / d)`, `d = max|x| / 127`.
package struct QuantizedActivations {
    /// `tokens × columns` int8 values, token after token.
    package let values: UnsafeMutablePointer<Int8>
    /// Per block: the scale `d`.
    package let scales: UnsafeMutablePointer<Float>
    /// Per block: `d · Σq`, for the weight formats that carry an offset (Q4_0's 8, the k-quants' mins).
    package let sums: UnsafeMutablePointer<Float>
    package let columns: Int
    /// The single token quantized per block of 256 instead, for ``QuantizedMatMul``'s decode kernels, when asked
    /// for; `values`, `scales` and `sums` are then not filled.
    package let superBlocks: SuperBlocks?

    package static let block = 32

    /// Runs `body` with `tokens` rows of `columns` floats from `x` quantized (`columns` a multiple of 32); with
    /// `superBlocks` (one token, `columns` a multiple of 256, a CPU with AVX-512), per block of 256 instead.
    package static func with<R>(
        x: UnsafePointer<Float>, xStride: Int, tokens: Int, columns: Int, superBlocks: Bool = false, pool: ThreadPool,
        _ body: (QuantizedActivations) -> R
    ) -> R {
        let blocks = columns / block
        let values = UnsafeMutablePointer<Int8>.allocate(capacity: tokens * columns)
        let scales = UnsafeMutablePointer<Float>.allocate(capacity: tokens * blocks)
        let sums = UnsafeMutablePointer<Float>.allocate(capacity: tokens * blocks)
        let wide = superBlocks ? SuperBlocks(x, tokens: tokens, columns: columns) : nil
        defer {
            values.deallocate()
            scales.deallocate()
            sums.deallocate()
            wide?.deallocate()
        }
        let activations = QuantizedActivations(values: values, scales: scales, sums: sums, columns: columns, superBlocks: wide)
        let quantize = { (range: Range<Int>) in
            var job = range.lowerBound
            while job < range.upperBound {
                let t = job / blocks, b = job % blocks, count = min(range.upperBound - job, blocks - b)
                activations.quantize(x + t * xStride + b * block, blocks: count, first: job)
                job += count
            }
        }
        let jobs = wide == nil ? tokens * blocks : 0
        if jobs < 512 { quantize(0..<jobs) } else { pool.forEachRange(jobs, quantize) }
        return body(activations)
    }

    /// `count` consecutive blocks of `x`, stored from block `first` on: with AVX-512 in C (the same values).
    private func quantize(_ x: UnsafePointer<Float>, blocks count: Int, first: Int) {
        if InstructionSet.cpuHasAVX512 {
            engine_quantize_blocks_avx512(x, count, values + first * Self.block, scales + first, sums + first)
            return
        }
        for i in 0..<count { quantize(x + i * Self.block, block: first + i) }
    }

    @inline(__always)
    private func quantize(_ x: UnsafePointer<Float>, block index: Int) {
        var maximum = SIMD8<Float>()
        for i in stride(from: 0, to: Self.block, by: 8) {
            let v = UnsafeRawPointer(x).loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            maximum = pointwiseMax(maximum, pointwiseMax(v, -v))
        }
        let d = maximum.max() / 127
        let inverse: Float = d == 0 ? 0 : 1 / d
        let q = values + index * Self.block
        var sum: Int32 = 0
        for i in 0..<Self.block {
            let value = Int8((x[i] * inverse).rounded(.toNearestOrAwayFromZero))
            q[i] = value
            sum &+= Int32(value)
        }
        scales[index] = d
        sums[index] = d * Float(sum)
    }
}

/// Matrix products of GGUF block-quantized weights (docs/design/gguf.md, Tensor types) with
/// ``QuantizedActivations``: per 32 elements an integer dot product (`vpmaddubsw` + `vpmaddwd`: unsigned weight
/// bytes times signed activation bytes), scaled in f32 by the weight and activation scales. Weights stay
/// quantized in memory; each row is read once for all tokens (it stays in L1 while they pass).
///
/// Where the CPU has AVX-512 VNNI (``InstructionSet/usesVNNI``), Q8_0, Q4_K and Q6_K go to the C kernels of
/// `CEngineAMX` (QuantizedMatMul.c): `vpdpbusd` on 64 bytes (two blocks) at a time, each weight row read once
/// per group of four tokens, with software prefetch. From 8 tokens on, these and Q4_0 and Q5_K go to the
/// register-blocked kernel of QuantizedPrefill.c. Their integer products are the same; only the order of the
/// f32 sums differs. A single token's products of Q4_K and Q6_K weights go to
/// ``decode(_:rows:activations:y:bias:accumulate:)`` instead.
package enum QuantizedMatMul {
    /// `y[t][n] (+)= bias[n] + Σₖ a[t][k] · W[n][k]` for weight rows `rows` and every token.
    package static func multiply(
        _ weights: WeightMatrix, rows: Range<Int>, activations a: QuantizedActivations, tokens: Int,
        y: UnsafeMutablePointer<Float>, yStride: Int, bias: UnsafePointer<Float>?, accumulate: Bool, instructionSet: InstructionSet
    ) {
        if tokens == 1, decode(weights, rows: rows, activations: a, y: y, bias: bias, accumulate: accumulate) { return }
        if instructionSet.usesVNNI, tokens >= prefillTokens, let type = prefillType(weights.format),
            engine_quantized_prefill_vnni(
                type, weights.data, weights.columns, rows.lowerBound, rows.upperBound, a.values, a.scales, a.sums, tokens, y, yStride,
                bias, accumulate ? 1 : 0
            ) != 0
        {
            return
        }
        if instructionSet.usesVNNI, let type = vnniType(weights.format) {
            engine_quantized_matmul_vnni(
                type, weights.data, weights.columns, rows.lowerBound, rows.upperBound, a.values, a.scales, a.sums, tokens, y, yStride,
                bias, accumulate ? 1 : 0
            )
            return
        }
        let rowBytes = weights.format.rowBytes(weights.columns)
        let blocks = weights.columns / QuantizedActivations.block
        for row in rows {
            let w = weights.data + row &* rowBytes
            for t in 0..<tokens {
                let q = UnsafeRawPointer(a.values + t &* weights.columns)
                let d = a.scales + t &* blocks, s = a.sums + t &* blocks
                let value: Float
                switch weights.format {
                case .q8_0: value = dotQ8_0(w, q, d, blocks: blocks)
                case .q4_0: value = dotQ4_0(w, q, d, s, blocks: blocks)
                case .q4_K: value = dotQ4_K(w, q, d, s, blocks: blocks / 8)
                case .q5_K: value = dotQ5_K(w, q, d, s, blocks: blocks / 8)
                case .q6_K: value = dotQ6_K(w, q, d, blocks: blocks / 8)
                default: preconditionFailure("\(weights.format) is not block-quantized")
                }
                let index = t &* yStride &+ row
                let result = value + (bias?[row] ?? 0)
                if accumulate { y[index] += result } else { y[index] = result }
            }
        }
    }

    /// The C kernels' code for `format`, or nil where only the AVX2 kernels exist.
    private static func vnniType(_ format: WeightFormat) -> Int32? {
        switch format {
        case .q8_0: Int32(ENGINE_QUANT_Q8_0)
        case .q4_K: Int32(ENGINE_QUANT_Q4_K)
        case .q6_K: Int32(ENGINE_QUANT_Q6_K)
        default: nil
        }
    }

    /// From this many tokens on (prefill), products go to the register-blocked kernel (QuantizedPrefill.c); below,
    /// and for batched decode of up to 4 streams, each row is read once per group of four tokens.
    private static let prefillTokens = 8

    /// The register-blocked kernel's code for `format`.
    private static func prefillType(_ format: WeightFormat) -> Int32? {
        switch format {
        case .q4_0: Int32(ENGINE_QUANT_Q4_0)
        case .q5_K: Int32(ENGINE_QUANT_Q5_K)
        default: vnniType(format)
        }
    }

    private typealias Bytes = SIMD4<Int64>

    @inline(__always)
    private static func load32(_ p: UnsafeRawPointer, _ offset: Int) -> Bytes {
        p.loadUnaligned(fromByteOffset: offset, as: Bytes.self)
    }

    /// Σ of unsigned bytes `u` times signed bytes `s`, four at a time: eight int32 lanes as floats.
    @inline(__always)
    private static func dot(_ u: Bytes, _ s: Bytes) -> SIMD8<Float> {
        let pairs = _mm256_maddubs_epi16(u, s)
        return _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    @inline(__always)
    private static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        Float(p.loadUnaligned(fromByteOffset: offset, as: Float16.self))
    }

    @inline(__always)
    private static func nibbles(_ bytes: Bytes, high: Bool) -> Bytes {
        let mask = _mm256_set1_epi8(0x0F)
        return high ? _mm256_and_si256(_mm256_srli_epi16(bytes, 4), mask) : _mm256_and_si256(bytes, mask)
    }

    /// Q8_0: signed weights, so the sign moves to the activations (`vpsignb`) and the weights become unsigned.
    @inline(__always)
    private static func dotQ8_0(_ w: UnsafeRawPointer, _ q: UnsafeRawPointer, _ d: UnsafePointer<Float>, blocks: Int) -> Float {
        var acc = SIMD8<Float>()
        for b in 0..<blocks {
            let block = w + b &* 34
            let weights = load32(block, 2), values = load32(q, b &* 32)
            let product = dot(_mm256_sign_epi8(weights, weights), _mm256_sign_epi8(values, weights))
            acc = acc.addingProduct(product, SIMD8(repeating: half(block, 0) * d[b]))
        }
        return acc.sum()
    }

    /// Q4_0: nibbles 0–15 (low nibbles are elements 0–15); the offset 8 is taken off with the block's sum.
    @inline(__always)
    private static func dotQ4_0(
        _ w: UnsafeRawPointer, _ q: UnsafeRawPointer, _ d: UnsafePointer<Float>, _ s: UnsafePointer<Float>, blocks: Int
    ) -> Float {
        var acc = SIMD8<Float>()
        var offset: Float = 0
        let mask = _mm_set1_epi8(0x0F)
        for b in 0..<blocks {
            let block = w + b &* 18
            let raw = block.loadUnaligned(fromByteOffset: 2, as: SIMD2<Int64>.self)
            let weights = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), mask), _mm_and_si128(raw, mask))
            let scale = half(block, 0)
            acc = acc.addingProduct(dot(weights, load32(q, b &* 32)), SIMD8(repeating: scale * d[b]))
            offset += scale * s[b]
        }
        return acc.sum() - 8 * offset
    }

    /// Q4_K: per 256-element block, sub-blocks `2p` and `2p+1` are the low and high nibbles of 32 bytes; each
    /// has a 6-bit scale and min (docs/design/gguf.md, Tensor types).
    @inline(__always)
    private static func dotQ4_K(
        _ w: UnsafeRawPointer, _ q: UnsafeRawPointer, _ d: UnsafePointer<Float>, _ s: UnsafePointer<Float>, blocks: Int
    ) -> Float {
        var acc = SIMD8<Float>()
        var mins: Float = 0
        for b in 0..<blocks {
            let block = w + b &* 144
            let scale = half(block, 0), minimum = half(block, 2)
            for j in 0..<8 {
                let (sc, m) = Dequantize.scaleMin(block + 4, j)
                let x = b &* 8 &+ j
                let weights = nibbles(load32(block, 16 &+ (j >> 1) &* 32), high: j & 1 == 1)
                acc = acc.addingProduct(dot(weights, load32(q, x &* 32)), SIMD8(repeating: scale * Float(sc) * d[x]))
                mins += minimum * Float(m) * s[x]
            }
        }
        return acc.sum() - mins
    }

    /// Q5_K: Q4_K with a fifth bit per element, bit `j` of `qh[i]` for element `32j + i`.
    @inline(__always)
    private static func dotQ5_K(
        _ w: UnsafeRawPointer, _ q: UnsafeRawPointer, _ d: UnsafePointer<Float>, _ s: UnsafePointer<Float>, blocks: Int
    ) -> Float {
        var acc = SIMD8<Float>()
        var mins: Float = 0
        let one = _mm256_set1_epi8(1)
        for b in 0..<blocks {
            let block = w + b &* 176
            let scale = half(block, 0), minimum = half(block, 2)
            let highBits = load32(block, 16)
            for j in 0..<8 {
                let (sc, m) = Dequantize.scaleMin(block + 4, j)
                let x = b &* 8 &+ j
                let low = nibbles(load32(block, 48 &+ (j >> 1) &* 32), high: j & 1 == 1)
                let fifth = _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(highBits, _mm_cvtsi32_si128(Int32(j))), one), 4)
                let weights = _mm256_or_si256(low, fifth)
                acc = acc.addingProduct(dot(weights, load32(q, x &* 32)), SIMD8(repeating: scale * Float(sc) * d[x]))
                mins += minimum * Float(m) * s[x]
            }
        }
        return acc.sum() - mins
    }

    /// Q6_K: 6-bit values with an offset of 32 and an int8 scale per 16 elements; each 32-element chunk spans two
    /// scales, which fall in int32 lanes 0–3 and 4–7 of the dot product.
    @inline(__always)
    private static func dotQ6_K(_ w: UnsafeRawPointer, _ q: UnsafeRawPointer, _ d: UnsafePointer<Float>, blocks: Int) -> Float {
        var acc = SIMD8<Float>()
        let mask = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3), offset = _mm256_set1_epi8(32)
        let ones = _mm256_set1_epi16(1)
        for b in 0..<blocks {
            let block = w + b &* 210
            let scale = half(block, 208)
            for h in 0..<2 {
                let highBytes = load32(block, 128 &+ h &* 32)
                for t in 0..<4 {
                    let lowBytes = load32(block, h &* 64 &+ (t & 1) &* 32)
                    let low = t < 2 ? _mm256_and_si256(lowBytes, mask) : _mm256_and_si256(_mm256_srli_epi16(lowBytes, 4), mask)
                    let high = _mm256_and_si256(_mm256_srl_epi16(highBytes, _mm_cvtsi32_si128(Int32(2 &* t))), three)
                    let weights = _mm256_or_si256(low, _mm256_slli_epi16(high, 4))
                    let x = b &* 8 &+ h &* 4 &+ t
                    let values = load32(q, x &* 32)
                    let pairs = _mm256_sub_epi16(_mm256_maddubs_epi16(weights, values), _mm256_maddubs_epi16(offset, values))
                    let sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones))
                    let group = 192 &+ h &* 8 &+ t &* 2
                    let a = Float(block.load(fromByteOffset: group, as: Int8.self))
                    let c = Float(block.load(fromByteOffset: group &+ 1, as: Int8.self))
                    let scales = SIMD8<Float>(a, a, a, a, c, c, c, c) * (scale * d[x])
                    acc = acc.addingProduct(sums, scales)
                }
            }
        }
        return acc.sum()
    }
}
