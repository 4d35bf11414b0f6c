#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The small per-token operations of a forward pass, in f32 as transformers computes them.
package enum VectorOps {
    /// `output = x * rsqrt(mean(x²) + eps) * weight` over `count` floats (RMSNorm in f32).
    package static func rmsNorm(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, eps: Float, count: Int,
        output: UnsafeMutablePointer<Float>
    ) {
        var sum = SIMD8<Float>()
        var i = 0
        while i + 8 <= count {
            let v = UnsafeRawPointer(x).loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            sum = sum.addingProduct(v, v)
            i += 8
        }
        var total = sum.sum()
        while i < count {
            total += x[i] * x[i]
            i += 1
        }
        let scale = 1 / sqrtf(total / Float(count) + eps)
        for j in 0..<count { output[j] = (x[j] * scale) * weight[j] }
    }

    /// `gate[i] = silu(gate[i]) * up[i]`: the gated MLP's activation, fused into one pass.
    package static func siluMultiply(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        let g8 = UnsafeMutableRawPointer(gate), u8 = UnsafeRawPointer(up)
        var i = 0
        while i + 8 <= count {
            let g = g8.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            let u = u8.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            g8.storeBytes(of: g / (1 + exp(-g)) * u, toByteOffset: i * 4, as: SIMD8<Float>.self)
            i += 8
        }
        while i < count {
            let g = gate[i]
            gate[i] = g / (1 + expf(-g)) * up[i]
            i += 1
        }
    }

    /// `gate[i] = gelu(gate[i]) * up[i]` with GELU's tanh approximation (`gelu_pytorch_tanh`): GeGLU.
    package static func geluTanhMultiply(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        let g8 = UnsafeMutableRawPointer(gate), u8 = UnsafeRawPointer(up)
        let root = SIMD8<Float>(repeating: 0.797_884_56), cubic = SIMD8<Float>(repeating: 0.044_715)
        var i = 0
        while i + 8 <= count {
            let g = g8.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            let u = u8.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            // tanh(z) = 1 - 2 / (e²ᶻ + 1), which saturates to ±1 as `exp` does to ∞ or 0.
            let z = root * (g + cubic * g * g * g)
            let tanh = 1 - 2 / (exp(z + z) + 1)
            g8.storeBytes(of: 0.5 * g * (1 + tanh) * u, toByteOffset: i * 4, as: SIMD8<Float>.self)
            i += 8
        }
        while i < count {
            let g = gate[i]
            gate[i] = 0.5 * g * (1 + tanhf(0.797_884_56 * (g + 0.044_715 * g * g * g))) * up[i]
            i += 1
        }
    }

    /// `x = cap · tanh(x / cap)` over `count` floats: Gemma's soft-capping of logits.
    package static func softcap(_ x: UnsafeMutablePointer<Float>, cap: Float, count: Int) {
        for i in 0..<count { x[i] = cap * tanhf(x[i] / cap) }
    }

    /// `eˣ` lane by lane, within about 2 ulp of `expf` (Cephes' polynomial after reducing by
    /// `n·ln 2`); inputs are clamped to ±88, where `expf` is already 0 or infinite in f32 terms.
    @inline(__always)
    package static func exp(_ x: SIMD8<Float>) -> SIMD8<Float> {
        // `replacing(with:where:)` rather than `clamped`, which compiles to a generic call.
        let low = SIMD8<Float>(repeating: -87.5), high = SIMD8<Float>(repeating: 88)
        let x = x.replacing(with: low, where: x .< low).replacing(with: high, where: x .> high)
        // Rounding by adding 1.5·2²³ leaves n in the low mantissa bits of `shifted`.
        let magic = SIMD8<Float>(repeating: 12_582_912)
        let shifted = magic.addingProduct(x, SIMD8(repeating: 1.442_695_04))
        let n = shifted - magic
        var r = x.addingProduct(n, SIMD8(repeating: -0.693_359_375))
        r = r.addingProduct(n, SIMD8(repeating: 2.121_944_40e-4))
        var p = SIMD8<Float>(repeating: 1.987_569_150_0e-4)
        p = (p * r) + 1.398_199_950_7e-3
        p = (p * r) + 8.333_451_907_3e-3
        p = (p * r) + 4.166_579_589_4e-2
        p = (p * r) + 1.666_666_545_9e-1
        p = (p * r) + 5.000_000_120_1e-1
        let polynomial = (p * (r * r)) + r + 1
        // 2ⁿ built from its exponent bits.
        let bits = (unsafeBitCast(shifted, to: SIMD8<UInt32>.self) &- 0x4B40_0000 &+ 127) &<< 23
        return polynomial * unsafeBitCast(bits, to: SIMD8<Float>.self)
    }

    /// Softmax in place over `count` floats, with the maximum subtracted first.
    package static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int) {
        var maximum = -Float.infinity
        for i in 0..<count { maximum = max(maximum, x[i]) }
        var sum: Float = 0
        for i in 0..<count {
            let e = expf(x[i] - maximum)
            x[i] = e
            sum += e
        }
        let inverse = 1 / sum
        for i in 0..<count { x[i] *= inverse }
    }
}
